// The RSS breakdown of a tracked process: where every resident byte of it goes, from the two
// halves only each side can know. The process publishes its heap's figures and the address ranges
// it owns (stats/memory_figures.h); this reads what the kernel says is resident — the total from
// /proc/PID/smaps_rollup, each mapping's share from /proc/PID/smaps — and puts them together:
//  - live: the bytes the program asked for, on resident pages;
//  - slack: what the live blocks' regions hold beyond that (size classes, alignment);
//  - heapkeeper: block headers, jemalloc's metadata, heapkeeper's own heap, side tables (block
//    map, page map, stack table), its threads' stacks, its library image, the stats segment;
//  - kept by the allocator: pages the program freed that jemalloc still holds (dirty and muzzy:
//    `heapkeeper trim` returns them), and free regions of slabs still in use and of thread caches
//    (which only more frees can return);
//  - outside the heap: code and files, the program's stacks, shared memory, other anonymous memory.
// What the parts leave of the RSS is shown as "unexplained": the process and the kernel are read
// a moment apart, and jemalloc's page counts may include pages never touched.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "stats/shm_layout.h"

namespace heapkeeper::view {

struct RssBreakdown {
  bool known = false;  // false: `error` says why (no /proc access, no walked snapshot yet)
  std::string error;
  uint64_t rss_bytes = 0;  // smaps_rollup's Rss
  uint64_t live_bytes = 0, live_untouched_bytes = 0, slack_bytes = 0;
  struct Heapkeeper {
    uint64_t headers = 0, jemalloc_metadata = 0, internal_heap = 0, tables = 0, stacks = 0, library = 0,
             jemalloc_boot = 0, segment = 0;
    uint64_t total() const {
      return headers + jemalloc_metadata + internal_heap + tables + stacks + library + jemalloc_boot + segment;
    }
  } heapkeeper;
  struct Kept {
    uint64_t dirty = 0, muzzy = 0, free_regions = 0;
    uint64_t returnable() const { return dirty + muzzy; }
    uint64_t total() const { return dirty + muzzy + free_regions; }
  } kept;
  struct Outside {
    uint64_t code_and_files = 0, stacks = 0, shared_memory = 0, anonymous = 0;
    uint64_t total() const { return code_and_files + stacks + shared_memory + anonymous; }
  } outside;
  uint64_t heap_mapping_rss = 0;  // smaps' Rss of the tracked reservation, for comparison
  stats::TrimPolicy trim_policy = stats::TrimPolicy::kTrimmer;
  uint64_t trim_interval_ms = 0, trim_kept_per_arena_bytes = 0;

  uint64_t sum() const { return live_bytes + slack_bytes + heapkeeper.total() + kept.total() + outside.total(); }
  int64_t unexplained() const { return static_cast<int64_t>(rss_bytes) - static_cast<int64_t>(sum()); }
};

// The resident set size of `pid` (smaps_rollup's Rss, bytes); false with a one-line `error`.
bool read_rss(pid_t pid, uint64_t& rss, std::string& error);

// Reads /proc/PID/smaps_rollup and /proc/PID/smaps and combines them with `snapshot` (sanitised),
// read from the segment at `segment_path` (its mapping in the process counts as heapkeeper's).
RssBreakdown measure_rss(pid_t pid, const stats::Snapshot& snapshot, const std::string& segment_path);

// Resident bytes of [start, end) in the process (its pagemap), for mappings that hold more than one
// published range.
using ResidentBytes = std::function<uint64_t(uint64_t start, uint64_t end)>;

// The same from the text of the two files and a pagemap reader (tests feed their own).
RssBreakdown combine_rss(const std::string& smaps_rollup, const std::string& smaps, const stats::Snapshot& snapshot,
                         const std::string& segment_path, const ResidentBytes& resident_in);

// `stats --json`'s "rss" object; null figures when not known.
nlohmann::json rss_json(const RssBreakdown& breakdown);
// `stats`'s lines, indented by two spaces.
std::vector<std::string> rss_text_lines(const RssBreakdown& breakdown);
// One sentence on who gives freed memory back, and when.
std::string trim_policy_text(const RssBreakdown& breakdown);

}  // namespace heapkeeper::view
