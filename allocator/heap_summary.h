// Read-only views of the private heap for reports, the public C API and the stats publisher:
// whole-process figures, and what is known about the block at an address.
#pragma once

#include <cstddef>
#include <cstdint>

#include "allocator/private_heap.h"
#include "allocator/thread_registry.h"

namespace heapkeeper::alloc {

struct HeapSummary {
  uint64_t live_bytes = 0, live_blocks = 0, peak_live_bytes = 0;
  uint64_t total_allocations = 0, total_frees = 0;
  uint64_t foreign_frees = 0, bad_frees = 0, distinct_stacks = 0;
  uint64_t threads_seen = 0, live_threads = 0;
  HeapFigures heap;
};

// Sums the per-thread counters and reads the heap figures (mincore, jemalloc stats).
HeapSummary summarize_heap();

struct BlockDescription {
  uintptr_t user_start = 0;
  size_t requested_size = 0, usable_size = 0;
  uint32_t stack_id = 0, thread_index = 0;
  uint64_t sequence = 0;
};

// Describes the live tracked block containing `address` (interior pointers included).
bool describe_block(uintptr_t address, BlockDescription& description);

}  // namespace heapkeeper::alloc
