// Quarantine: blocks collect mode has reclaimed but not yet freed, and blocks it has freed.
//
// A conservative scan can only be wrong in one direction — a pointer it cannot see (hidden by the
// program, held where no scan looks) — and then freeing the block breaks a program that was
// correct. So a reclaimed block is first held here, still allocated, until a later scan confirms
// that no reference to it appeared; only then is it freed, its header marked as freed by heapkeeper
// so that a later free by the program is recognised. Whoever clears a block's quarantine bit —
// the collector freeing or keeping it, or the program freeing it first — decides its fate, so the
// two never free it twice.
//
// The free path pays one load of a read-mostly counter while nothing is in quarantine (the normal
// case, and always outside collect mode); the bitmap (one bit per 16-byte granule, like the live
// bitmap, mapped NORESERVE the first time a block is held) is read only while the counter is not 0.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace heapkeeper::alloc {

// The free stack id written into the header of a block that collect mode freed (stack ids stay
// below StackTable::kMaxStacks).
inline constexpr uint32_t kFreedByCollector = UINT32_MAX;

class Quarantine {
 public:
  // Collector: holds the live block starting at `region`. False if it could not (no memory) or
  // was held already.
  bool hold(uintptr_t region) noexcept;
  // Takes the block out of quarantine; true only for the one caller that cleared its bit.
  bool release(uintptr_t region) noexcept;
  bool holds(uintptr_t region) const noexcept;
  // In a forked child: nothing is held any more (the collector's list of held blocks is gone).
  void forget_all() noexcept;
  // Whether any block is held: the free path's cheap first test.
  bool active() const noexcept { return held_.load(std::memory_order_relaxed) != 0; }

 private:
  std::atomic<uint64_t> held_{0};
};

Quarantine& quarantine() noexcept;

// Frees a block the collector reclaimed and took out of quarantine: retired, its header marked
// kFreedByCollector, its memory back to jemalloc. False if the block was freed meanwhile.
bool free_reclaimed(uintptr_t region, uint32_t sequence) noexcept;

// One diagnostic line for a block heapkeeper reclaimed (or was about to) while the program still
// had it: `what` says what happened, with the block's size and allocation stack. Never aborts.
void report_reclaimed_too_early(uintptr_t user_pointer, size_t size, uint32_t stack_id, const char* what) noexcept;
// The same for a call of the program (`api_name`: free, realloc...) on such a block.
void report_reclaimed_call(uintptr_t user_pointer, size_t size, uint32_t stack_id, const char* api_name,
                           const char* what) noexcept;

}  // namespace heapkeeper::alloc
