// Building one RawSnapshot (shm_layout.h) of the process: totals and rates, heap figures, threads,
// recent scans and the live/leaked time series; while a reader watches, also the size-class
// histogram, the top allocation sites and the last scan's leaks, with raw frames and the module
// table that names them (the reader symbolizes). Runs on the publisher thread, off the hot path;
// walks the live blocks without stopping the world (a moving picture).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "collector/collector.h"
#include "report/module_map.h"
#include "stats/shm_layout.h"
#include "stats/site_growth.h"

namespace heapkeeper::stats {

class SnapshotBuilder {
 public:
  // Fills the figures of `out` and the entries of its tables below their counts (store_used copies
  // exactly that). `now_ns` is CLOCK_REALTIME, `start_ns` the process start. `symbolize` means a
  // reader is watching: only then come the sites, size histogram and leak table, with raw frames.
  void build(RawSnapshot& out, uint64_t now_ns, uint64_t start_ns, bool symbolize);

 private:
  void add_sites(RawSnapshot& out, const collect::ScanReport& last, double seconds, uint64_t now_ns);
  // Unwatched, the sites are not built; their live bytes are still sampled now and then, so
  // growth is known when a reader arrives.
  void sample_growth_unwatched(uint64_t now_ns);
  void fill_frames(uint32_t stack_id, RawFrame* frames, uint32_t& depth);

  report::ModuleMap module_map_;            // what is mapped, read once per watched snapshot
  std::vector<report::RawModule> modules_;  // the modules this snapshot's frames name
  std::vector<uint64_t> python_keys_;       // the Python codes they name (allocator/python_frame_word.h)
  uint64_t previous_time_ns_ = 0;
  uint64_t previous_allocations_ = 0, previous_frees_ = 0;
  std::unordered_map<uint32_t, uint64_t> previous_site_allocations_;
  uint64_t publish_count_ = 0;
  SiteGrowth growth_;
  uint64_t last_unwatched_sample_ns_ = 0;
  uint64_t last_series_ns_ = 0;
  SeriesPoint series_[kSeriesLength] = {};
  uint32_t series_count_ = 0, series_next_ = 0;
};

}  // namespace heapkeeper::stats
