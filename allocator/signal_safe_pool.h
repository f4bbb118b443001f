// SignalSafePool: memory for allocations that arrive while their thread is inside jemalloc (a
// signal handler that allocates, interrupting malloc), which jemalloc cannot serve. Lock-free and
// async-signal-safe: blocks come from a reserved range by bumping, and a freed block goes on a
// lock-free list of its size class (powers of two, 16 bytes to 64 MiB) for the next allocation of
// that class, so a program whose handler allocates and frees under a fast timer reuses the same
// few blocks instead of using the range up (it never reused, and an adversarial round's handler
// under a 100 us timer exhausted it; malloc then returned NULL). An aligned request takes a class
// block with room to align inside it; only requests above the largest class are never reused.
//
// Each block is preceded by two words: its state (live or freed, its class, and how far an aligned
// block lies into its class block), which tells a double or invalid free (a freed block keeps it,
// marked freed, until its memory is handed out again), and its requested size (malloc_usable_size,
// realloc). A freed block is zeroed (its whole pages given back to the
// kernel): the collector reads the pool's range as a root, and a freed block's stale pointers
// would keep blocks the program dropped looking reachable. So every block handed out is zero,
// reused or fresh. Recognised by address in free and realloc.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "allocator/address_reservation.h"

namespace heapkeeper::alloc {

class SignalSafePool {
 public:
  enum class FreeResult { kFreed, kDoubleFree, kInvalid };

  bool initialize();
  void* allocate(size_t size, size_t alignment, bool zero) noexcept;
  // Gives a block back for reuse (zeroing it); a pointer the pool did not hand out, or one already
  // freed, is left alone and said so.
  FreeResult free(void* ptr) noexcept;
  bool contains(const void* ptr) const noexcept { return range_.size() != 0 && range_.contains(ptr); }
  size_t size_of(const void* ptr) const noexcept;
  size_t used() const noexcept { return range_.used(); }
  const AddressReservation& range() const noexcept { return range_; }

  static constexpr unsigned kSmallestClassShift = 4;  // 16 bytes
  static constexpr unsigned kLargestClassShift = 26;  // 64 MiB
  static constexpr unsigned kClasses = kLargestClassShift - kSmallestClassShift + 1;

 private:
  // A class block's payload taken off list `index`, or 0 when the list is empty.
  uintptr_t pop(unsigned index) noexcept;
  // Puts a freed (zeroed) class block's payload back on list `index`; `offset_units`: how far in
  // its user pointer was, in 16-byte units (0: unaligned), whose two words pop clears.
  void push(unsigned index, uintptr_t payload, uintptr_t offset_units) noexcept;
  static void zero(uintptr_t start, size_t bytes) noexcept;

  // A list head: a change count in the high half (a pop that read a head another thread popped
  // and pushed back meanwhile fails its compare-and-swap instead of linking a block in use), and
  // in the low half the first block's position in 16-byte units plus one (0: the list is empty).
  // A block's successor is kept, in the same form, in its first payload word.
  std::atomic<uint64_t> free_lists_[kClasses] = {};
  AddressReservation range_;
};

SignalSafePool& signal_safe_pool();

}  // namespace heapkeeper::alloc
