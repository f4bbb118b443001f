// The producer's half of the RSS breakdown (shm_layout.h MemoryFigures): what only the traced
// process knows about its memory. The `heapkeeper` binary adds what only the kernel knows — which
// pages of each mapping are resident (/proc/PID/smaps) — and puts the two together
// (viewer/rss_breakdown.h); no /proc file is read here.
//  - jemalloc's figures for the tracked arenas and the internal one: pages in use, dirty and muzzy
//    pages it keeps after frees, its own metadata;
//  - who gives freed memory back (allocator/heap_trimmer.h);
//  - the address ranges heapkeeper owns (its reservations, side tables, threads' stacks, its own
//    library image, jemalloc's boot block) and the program's threads' stacks;
//  - in watched snapshots, from the walk over the live blocks the snapshot makes anyway, each live
//    region split into the bytes the program asked for, the in-band header and the slack, counted
//    only where its pages are resident (mincore): a calloc'd block the program never touched costs
//    no RSS, and the breakdown must not say it does.
#pragma once

#include <cstddef>
#include <cstdint>

#include "allocator/private_heap.h"
#include "stats/shm_layout.h"

namespace heapkeeper::stats {

// Accumulates the live blocks of one walk (BlockMap::for_each_live, address order), reading the
// resident pages of the tracked heap a window at a time: one mincore per 64 MiB walked over.
class LiveResidency {
 public:
  LiveResidency(uintptr_t heap_base, uint64_t heap_used);
  // One live block: its region [region, region + region_size), the program's bytes at
  // region + user_offset, and whether its 16-byte header sits right in front of them. Values read
  // from a block freed meanwhile may be anything: they are clamped to the region.
  void add(uintptr_t region, size_t region_size, size_t user_offset, size_t requested, bool header_in_band);
  // Writes the totals into `out` and marks it walked.
  void finish(MemoryFigures& out) const;

 private:
  bool resident(uintptr_t page);

  static constexpr size_t kWindowPages = 16384;
  uintptr_t base_, end_;
  uintptr_t window_start_ = 0, window_end_ = 0;
  uint64_t live_resident_ = 0, live_untouched_ = 0, headers_ = 0, slack_ = 0, regions_ = 0, blocks_ = 0;
  unsigned char pages_[kWindowPages];
};

// Fills everything of `out` but the walk's figures: arenas, trimming policy and address ranges.
void fill_memory_figures(MemoryFigures& out, const alloc::HeapFigures& heap);

}  // namespace heapkeeper::stats
