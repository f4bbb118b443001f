// Declarations shared by the engine's own files (engine.cpp, allocation_api.cpp, bad_free.cpp,
// jemalloc_compat.cpp). Not for preload/ or the layers above: they use engine.h.
#pragma once

#include <cstddef>
#include <cstdint>

#include "allocator/block_header.h"
#include "allocator/engine.h"

namespace heapkeeper::alloc {

// A thread forwards its net live-byte change to the global total in steps of this size.
inline constexpr int64_t kLiveFlushStep = int64_t{256} * 1024;

void* allocate_tracked(size_t size, size_t alignment, bool zero) noexcept;
void* allocate_untracked(size_t size, size_t alignment, bool zero) noexcept;
void free_tracked(void* ptr, const char* api_name) noexcept;
void* reallocate_tracked(void* ptr, size_t size, size_t alignment_hint) noexcept;
// The live tracked block whose user pointer is `ptr`: its region (0 if there is none) and its header
// (in band or out of band). Returned in registers: an out-parameter would give the hooks a stack
// slot holding the block's header address, a stale word that later keeps whatever block reuses
// that memory reachable.
struct UserBlock {
  uintptr_t region;
  BlockHeader* header;
};
UserBlock block_of_user_pointer(uintptr_t ptr) noexcept;
inline uintptr_t region_of_user_pointer(uintptr_t ptr) noexcept { return block_of_user_pointer(ptr).region; }
size_t tracked_usable_size(uintptr_t region) noexcept;
// The program was told the block's usable size: record it as the block's size (see engine.cpp).
void claim_usable_size(uintptr_t region, size_t usable) noexcept;

// kReclaimed: the block was freed by collect mode (its header says so), and the program, which
// still had it, frees it now: reported, never fatal (see quarantine.h).
enum class BadFreeKind { kInvalid, kDouble, kForeignRealloc, kReclaimed };
// Classifies a pointer into the tracked heap that is not a live block's user pointer.
BadFreeKind classify_bad_free(uintptr_t ptr) noexcept;
// Reports on stderr with stacks, then aborts unless HEAPKEEPER_ON_BAD_FREE=continue.
void report_bad_free(void* ptr, BadFreeKind kind, const char* api_name) noexcept;
void set_bad_free_stack_printer(StackPrinter printer) noexcept;

}  // namespace heapkeeper::alloc
