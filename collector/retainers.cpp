// Implementation of retainer paths (see retainers.h).
#include "collector/retainers.h"

#include <algorithm>

#include "allocator/block_map.h"
#include "collector/collector.h"

namespace heapkeeper::collect {
namespace {

RetainerPath make_path(const ReferenceGraph& graph, const uint32_t* nodes, size_t length, uintptr_t root_word) {
  RetainerPath path;
  path.root_word = root_word;
  if (const RootRange* range = graph.root_range_of(root_word)) path.root = *range;
  for (size_t i = 0; i < length; ++i)
    path.chain.push_back({graph.region(nodes[i]), graph.size(nodes[i]), graph.stack_id(nodes[i])});
  return path;
}

void answer_from(ReferenceGraph& graph, const WhyTarget& target, size_t path_limit, WhyAnswer& answer) {
  std::vector<uint32_t> members;
  if (target.site) {
    for (uint32_t b = 1; b <= graph.block_count(); ++b) {
      if (graph.reachable(b) && target.site(graph.stack_id(b))) members.push_back(b);
    }
  } else if (const uint32_t b = graph.block_at(target.address)) {
    members.push_back(b);
  } else {
    // Not a block marking reached: leaked if the heap has a live block there, else no block.
    answer.target_unreachable = alloc::block_map().find_referenced(target.address) != 0;
    return;
  }
  for (uint32_t b : members) {
    ++answer.target_blocks;
    answer.target_bytes += graph.size(b);
  }
  answer.retained_bytes = graph.retained_by_set(members.data(), members.size());
  // One block: its shortest paths through distinct referrers. A site: the shortest path to each
  // of its nearest blocks.
  std::vector<uint32_t> nodes(4096);
  std::vector<size_t> lengths(path_limit);
  std::vector<uintptr_t> roots(path_limit);
  if (members.size() == 1) {
    const size_t count =
        graph.retainer_paths(members[0], path_limit, nodes.data(), nodes.size(), lengths.data(), roots.data());
    size_t offset = 0;
    for (size_t i = 0; i < count; ++i) {
      answer.paths.push_back(make_path(graph, nodes.data() + offset, lengths[i], roots[i]));
      offset += lengths[i];
    }
    return;
  }
  std::stable_sort(members.begin(), members.end(),
                   [&](uint32_t a, uint32_t b) { return graph.distance(a) < graph.distance(b); });
  for (size_t i = 0; i < members.size() && answer.paths.size() < path_limit; ++i) {
    size_t length = 0;
    uintptr_t root = 0;
    if (graph.retainer_paths(members[i], 1, nodes.data(), nodes.size(), &length, &root) == 1)
      answer.paths.push_back(make_path(graph, nodes.data(), length, root));
  }
}

}  // namespace

WhyAnswer why_now(const WhyTarget& target, size_t path_limit) {
  WhyAnswer answer;
  bool inspected = false;
  const ScanReport scan = scan_now(false, 0, nullptr, 0, false, [&](ReferenceGraph& graph) {
    inspected = true;
    answer_from(graph, target, path_limit, answer);
  });
  answer.stop_method = scan.stop_method;
  if (!scan.ok) {
    answer.failure = "scan failed: " + scan.failure;
  } else if (!inspected) {
    answer.failure = "the reference graph could not be recorded (out of memory or address space)";
  } else {
    answer.ok = true;
  }
  return answer;
}

}  // namespace heapkeeper::collect
