// From a scan's reference graph to the figures a report shows: the blocks that retain most, and
// for the allocation sites holding most reachable bytes, what each site retains as a whole.
#pragma once

#include <cstddef>

#include "collector/collector.h"
#include "collector/reference_graph.h"

namespace heapkeeper::collect {

// How many sites get an exact retained size (one walk of the graph each), and how many blocks
// are listed as top retainers.
inline constexpr size_t kRetainedSites = 16;
inline constexpr size_t kTopRetainers = 10;

// Analyses `graph` (recorded by the marker, world running again) into `report`. Leaves
// report.retained_known false when the graph is incomplete or memory ran out.
void analyse_retained(ReferenceGraph& graph, ScanReport& report);

}  // namespace heapkeeper::collect
