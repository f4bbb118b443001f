// Implementation of the retained-size figures (see retained_analysis.h).
#include "collector/retained_analysis.h"

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "allocator/monotonic_clock.h"

namespace heapkeeper::collect {

using alloc::monotonic_ns;

void analyse_retained(ReferenceGraph& graph, ScanReport& report) {
  const uint64_t started = monotonic_ns();
  if (!graph.analyse()) return;
  const uint32_t blocks = graph.block_count();
  // Reachable bytes per site, and the blocks that retain most.
  std::unordered_map<uint32_t, ScanReport::RetainedSite> sites;
  std::vector<ScanReport::RetainedBlock> top;
  for (uint32_t b = 1; b <= blocks; ++b) {
    if (!graph.reachable(b)) continue;
    ScanReport::RetainedSite& site = sites[graph.stack_id(b)];
    site.stack_id = graph.stack_id(b);
    ++site.blocks;
    site.bytes += graph.size(b);
    const uint64_t retained = graph.retained_bytes(b);
    if (top.size() < kTopRetainers || retained > top.back().retained_bytes) {
      ScanReport::RetainedBlock block{graph.region(b), graph.size(b), retained, graph.stack_id(b)};
      top.insert(std::upper_bound(top.begin(), top.end(), block,
                                  [](const ScanReport::RetainedBlock& a, const ScanReport::RetainedBlock& c) {
                                    return a.retained_bytes > c.retained_bytes;
                                  }),
                 block);
      if (top.size() > kTopRetainers) top.pop_back();
    }
  }
  std::vector<ScanReport::RetainedSite> largest;
  largest.reserve(sites.size());
  for (const auto& entry : sites) largest.push_back(entry.second);
  std::sort(largest.begin(), largest.end(), [](const ScanReport::RetainedSite& a, const ScanReport::RetainedSite& c) {
    return a.bytes != c.bytes ? a.bytes > c.bytes : a.stack_id < c.stack_id;
  });
  if (largest.size() > kRetainedSites) largest.resize(kRetainedSites);
  // Each site's blocks (one pass over the graph for all of them), then one walk avoiding them.
  std::unordered_map<uint32_t, size_t> index_of;
  for (size_t i = 0; i < largest.size(); ++i) index_of[largest[i].stack_id] = i;
  std::vector<std::vector<uint32_t>> members(largest.size());
  for (uint32_t b = 1; b <= blocks; ++b) {
    if (!graph.reachable(b)) continue;
    const auto found = index_of.find(graph.stack_id(b));
    if (found != index_of.end()) members[found->second].push_back(b);
  }
  for (size_t i = 0; i < largest.size(); ++i)
    largest[i].retained_bytes = graph.retained_by_set(members[i].data(), members[i].size());
  report.retained_sites = std::move(largest);
  report.top_retainers = std::move(top);
  report.references_recorded = graph.edge_count();
  report.retained_known = true;
  report.retained_analysis_ns = monotonic_ns() - started;
}

}  // namespace heapkeeper::collect
