// Implementation of the heap's read-only views (see heap_summary.h).
#include "allocator/heap_summary.h"

#include <algorithm>

#include "allocator/block_header.h"
#include "allocator/block_map.h"
#include "allocator/engine_internal.h"
#include "allocator/stack_table.h"

namespace heapkeeper::alloc {

HeapSummary summarize_heap() {
  HeapSummary s;
  if (!is_initialized()) return s;
  ThreadTotals t = thread_registry().totals();
  s.total_allocations = t.allocations;
  s.total_frees = t.frees;
  s.live_blocks = t.allocations - t.frees;
  s.live_bytes = t.allocated_bytes - t.freed_bytes;
  // The shared peak lags by up to 256 KiB per thread: never publish a peak below the live figure.
  s.peak_live_bytes = std::max(thread_registry().peak_live_bytes(), s.live_bytes);
  s.threads_seen = t.threads_seen;
  s.live_threads = t.live_threads;
  s.foreign_frees = foreign_free_count();
  s.bad_frees = bad_free_count();
  s.distinct_stacks = stack_table().count();
  // jemalloc's statistics only for a heap that was used: with nothing ever allocated from the tracked
  // arenas they hold no bytes, and the refresh of those statistics (its "epoch", which clears and
  // merges every arena's) was most of the instructions of the exit report of a process that
  // allocated nothing (issue #12: a shell loop of such processes, each writing its report).
  s.heap = private_heap().figures(t.allocations != 0);
  return s;
}

bool describe_block(uintptr_t address, BlockDescription& d) {
  if (!is_initialized()) return false;
  const uintptr_t region = block_map().find_region(address);
  if (region == 0) return false;
  const BlockHeader* header = block_map().header(region);
  d.user_start = region + header->user_offset();
  d.requested_size = header->size();
  d.usable_size = tracked_usable_size(region);
  d.stack_id = header->stack_id;
  d.thread_index = header->thread_index();
  d.sequence = header->sequence;
  return true;
}

}  // namespace heapkeeper::alloc
