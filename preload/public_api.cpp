// heapkeeper's public C interface (include/heapkeeper/heapkeeper.h), forwarding to the engine's
// read-only views and the report layer.
#include "heapkeeper/heapkeeper.h"

#include <cerrno>

#include "allocator/engine.h"
#include "allocator/heap_summary.h"
#include "allocator/stack_table.h"
#include "report/exit_report.h"

#define HK_EXPORT extern "C" __attribute__((visibility("default")))

namespace alloc = heapkeeper::alloc;

HK_EXPORT int heapkeeper_block_info(const void* address, struct heapkeeper_block_info* info) {
  alloc::BlockDescription d;
  if (info == nullptr || !alloc::describe_block(reinterpret_cast<uintptr_t>(address), d)) return 0;
  info->start = reinterpret_cast<void*>(d.user_start);
  info->requested_size = d.requested_size;
  info->usable_size = d.usable_size;
  info->stack_id = d.stack_id;
  info->thread_index = d.thread_index;
  info->sequence = d.sequence;
  return 1;
}

HK_EXPORT int heapkeeper_stack_frames(uint32_t stack_id, uintptr_t* frames, int capacity) {
  alloc::StackView view = alloc::stack_table().frames(stack_id);
  if (view.depth == 0) return -1;
  for (int i = 0; i < capacity && i < static_cast<int>(view.depth); ++i) frames[i] = view.frames[i];
  return static_cast<int>(view.depth);
}

HK_EXPORT void heapkeeper_heap_stats(struct heapkeeper_heap_stats* stats) {
  if (stats == nullptr) return;
  alloc::HeapSummary s;
  alloc::run_guarded([&] { s = alloc::summarize_heap(); });
  stats->live_bytes = s.live_bytes;
  stats->live_blocks = s.live_blocks;
  stats->peak_live_bytes = s.peak_live_bytes;
  stats->total_allocations = s.total_allocations;
  stats->total_frees = s.total_frees;
  stats->heap_mapped_bytes = s.heap.mapped_bytes;
  stats->heap_resident_bytes = s.heap.resident_bytes;
  stats->heap_returned_bytes = s.heap.returned_bytes;
  stats->heap_active_bytes = s.heap.active_bytes;
  stats->foreign_frees = s.foreign_frees;
  stats->bad_frees = s.bad_frees;
  stats->distinct_stacks = s.distinct_stacks;
  stats->threads_seen = s.threads_seen;
}

HK_EXPORT int heapkeeper_write_report(const char* path) {
  if (path == nullptr) {
    errno = EINVAL;
    return -1;
  }
  int result = -1;
  alloc::run_guarded([&] { result = heapkeeper::report::write_report_file(path); });
  return result;
}
