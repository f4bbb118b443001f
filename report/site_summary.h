// Grouping blocks by allocation site (stack), largest first: what the reports show for live
// memory, and what the live snapshot reuses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace heapkeeper::report {

struct SiteTotals {
  uint32_t stack_id = 0;  // one representative id (identical stacks interned twice are merged)
  uint64_t blocks = 0;
  uint64_t bytes = 0;
};

// Accumulates (stack id, bytes) pairs and returns the sites sorted by bytes, then blocks.
class SiteAccumulator {
 public:
  void add(uint32_t stack_id, uint64_t bytes);
  std::vector<SiteTotals> sorted() const;

 private:
  // Open addressing on the stack id (an entry with no blocks is empty), at most half full: sized
  // by the sites seen, not by the largest id (stack ids are node ids of the stack tree, several
  // per distinct stack, and a program may have millions).
  std::vector<SiteTotals> table_;
  size_t used_ = 0;
};

// Sites of the blocks live right now (not synchronised with other threads: a moving picture).
std::vector<SiteTotals> live_sites();

// The same split by the thread that allocated each block (heapkeeper's thread number), largest
// first: what a profile labels by thread.
struct ThreadSiteTotals {
  uint32_t stack_id = 0, thread = 0;
  uint64_t blocks = 0, bytes = 0;
};
std::vector<ThreadSiteTotals> live_sites_by_thread();

}  // namespace heapkeeper::report
