// The reference graph's analyses: dominators and retained sizes worked out by hand on small
// graphs (a tree, shared subtrees, a cycle, a diamond whose child no single block retains), then
// checked against their definitions on random graphs: a block's retained bytes are what becomes
// unreachable when that block alone is removed, and path lengths are breadth-first distances.
#include "collector/reference_graph.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <queue>
#include <random>
#include <utility>
#include <vector>

namespace heapkeeper::collect {
namespace {

constexpr uint32_t kRoot = ReferenceGraph::kRoot;

// A graph given as edges; recorded the way the marker records it: each block's references in one
// run, root references first. Sizes: block b is b * 10 bytes unless given.
struct Shape {
  uint32_t blocks = 0;
  std::vector<std::pair<uint32_t, uint32_t>> edges;  // (from, to); from == 0 is a root word
  std::vector<uint64_t> sizes;                       // optional, index = block
};

// Where the tests' blocks lie: block b's region at kHeap + b * 0x100 - 16, its user bytes 16 further
// (0x10000 + b * 0x100), as the marker's live bitmap would say it (one bit per 16-byte granule).
constexpr uintptr_t kHeap = 0x10000;
uintptr_t user_address(uint32_t b) { return kHeap + b * 0x100; }

bool give_addresses(ReferenceGraph& graph, uint32_t blocks) {
  std::vector<uint64_t> live((size_t{blocks} * 16 + 64) / 64, 0);
  for (uint32_t b = 1; b <= blocks; ++b) {
    const size_t granule = (user_address(b) - 16 - kHeap) / 16;
    live[granule / 64] |= uint64_t{1} << (granule % 64);
  }
  return graph.set_block_addresses(kHeap, live.data(), live.size());
}

void record(ReferenceGraph& graph, const Shape& shape) {
  ASSERT_TRUE(graph.prepare(shape.edges.size() + shape.blocks * ReferenceGraph::kBlockRecord, shape.blocks));
  ASSERT_TRUE(graph.begin(shape.blocks));
  for (const auto& [from, to] : shape.edges) {
    if (from == kRoot) graph.add_root_edge(to, 0x1000 + to * 8);
  }
  for (uint32_t b = 1; b <= shape.blocks; ++b) {
    graph.open_block(b, b < shape.sizes.size() ? shape.sizes[b] : b * 10, 16, 1000 + b);
    for (const auto& [from, to] : shape.edges) {
      if (from == b) graph.add_edge(to);
    }
  }
  ASSERT_TRUE(give_addresses(graph, shape.blocks));
  ASSERT_TRUE(graph.analyse());
}

TEST(ReferenceGraph, TreeUnderOneGlobal) {
  // root -> 1 -> {2, 3}, 2 -> {4, 5}: each block retains its subtree.
  ReferenceGraph g;
  record(g, {5, {{0, 1}, {1, 2}, {1, 3}, {2, 4}, {2, 5}}, {}});
  EXPECT_EQ(g.retained_bytes(1), 10u + 20 + 30 + 40 + 50);
  EXPECT_EQ(g.retained_bytes(2), 20u + 40 + 50);
  EXPECT_EQ(g.retained_bytes(3), 30u);
  EXPECT_EQ(g.immediate_dominator(1), kRoot);
  EXPECT_EQ(g.immediate_dominator(4), 2u);
  // What the marker read of each block is kept.
  EXPECT_EQ(g.region(3), 0x10000u + 3 * 0x100);
  EXPECT_EQ(g.size(3), 30u);
  EXPECT_EQ(g.stack_id(3), 1003u);
}

TEST(ReferenceGraph, SizesAndAddressesSurviveTheCompactRecord) {
  // The stream keeps a block's size and user offset in one word below 64 MiB and in three from
  // there; its address comes from its rank in the live bitmap. Four blocks in address order: 1 (100
  // bytes, in-band header), 2 (never scanned: unreachable), 3 (64 MiB, user bytes 64 past its
  // region, as an aligned allocation), 4 (5 GiB, header out of band: user bytes at the region).
  const uintptr_t regions[] = {0, kHeap + 0x100, kHeap + 0x200, kHeap + 0x1000, kHeap + 0x2000 + (uintptr_t{1} << 26)};
  constexpr uint64_t kBig = uint64_t{5} << 30;
  std::vector<uint64_t> live((regions[4] - kHeap) / 16 / 64 + 1, 0);
  for (uint32_t b = 1; b <= 4; ++b) {
    const size_t granule = (regions[b] - kHeap) / 16;
    live[granule / 64] |= uint64_t{1} << (granule % 64);
  }
  ReferenceGraph g;
  ASSERT_TRUE(g.prepare(64, 4));
  ASSERT_TRUE(g.begin(4));
  g.add_root_edge(1, 0x1000);
  g.open_block(1, 100, 16, 7);
  g.add_edge(3);
  g.add_edge(4);
  g.open_block(3, uint64_t{1} << 26, 64, 8);
  g.add_edge(4);
  g.open_block(4, kBig, 0, 9);
  ASSERT_TRUE(g.set_block_addresses(kHeap, live.data(), live.size()));
  ASSERT_TRUE(g.analyse());
  EXPECT_EQ(g.size(1), 100u);
  EXPECT_EQ(g.size(3), uint64_t{1} << 26);
  EXPECT_EQ(g.size(4), kBig);
  EXPECT_EQ(g.stack_id(3), 8u);
  EXPECT_EQ(g.stack_id(4), 9u);
  EXPECT_EQ(g.region(1), regions[1] + 16);
  EXPECT_EQ(g.region(3), regions[3] + 64);
  EXPECT_EQ(g.region(4), regions[4]);
  EXPECT_EQ(g.retained_bytes(1), 100 + (uint64_t{1} << 26) + kBig);
  EXPECT_EQ(g.retained_bytes(4), kBig);
  EXPECT_FALSE(g.reachable(2));
  // block_at: user bytes only (not the header, not past the end), reachable blocks only.
  EXPECT_EQ(g.block_at(regions[1] + 16), 1u);
  EXPECT_EQ(g.block_at(regions[1] + 16 + 99), 1u);
  EXPECT_EQ(g.block_at(regions[1] + 16 + 100), 0u);
  EXPECT_EQ(g.block_at(regions[1]), 0u);
  EXPECT_EQ(g.block_at(regions[2] + 16), 0u);
  EXPECT_EQ(g.block_at(regions[3] + 64 + 5), 3u);
  EXPECT_EQ(g.block_at(regions[4] + (uint64_t{4} << 30)), 4u);  // beyond the bitmap's last word
  EXPECT_EQ(g.block_at(kHeap - 16), 0u);
}

TEST(ReferenceGraph, SharedSubtreeIsRetainedByTheirCommonDominator) {
  // root -> 1; 1 -> 2, 1 -> 3; 2 -> 4, 3 -> 4; 4 -> 5. Neither 2 nor 3 retains 4 alone; 1 does.
  ReferenceGraph g;
  record(g, {5, {{0, 1}, {1, 2}, {1, 3}, {2, 4}, {3, 4}, {4, 5}}, {}});
  EXPECT_EQ(g.retained_bytes(2), 20u);
  EXPECT_EQ(g.retained_bytes(3), 30u);
  EXPECT_EQ(g.retained_bytes(4), 40u + 50);
  EXPECT_EQ(g.retained_bytes(1), 150u);
  EXPECT_EQ(g.immediate_dominator(4), 1u);
  // The set {2, 3} (one allocation site, say) does retain 4 and 5.
  const uint32_t site[] = {2, 3};
  EXPECT_EQ(g.retained_by_set(site, 2), 20u + 30 + 40 + 50);
}

TEST(ReferenceGraph, TwoRootsShareABlock) {
  // Global A -> 1 -> 3, global B -> 2 -> 3: 3 is dominated by the roots only.
  ReferenceGraph g;
  record(g, {3, {{0, 1}, {0, 2}, {1, 3}, {2, 3}}, {}});
  EXPECT_EQ(g.immediate_dominator(3), kRoot);
  EXPECT_EQ(g.retained_bytes(1), 10u);
  EXPECT_EQ(g.retained_bytes(2), 20u);
  const uint32_t both[] = {1, 2};
  EXPECT_EQ(g.retained_by_set(both, 2), 60u);
}

TEST(ReferenceGraph, CycleHeldFromOutside) {
  // root -> 1 -> 2 -> 3 -> 1 (a cycle), 3 -> 4.
  ReferenceGraph g;
  record(g, {4, {{0, 1}, {1, 2}, {2, 3}, {3, 1}, {3, 4}}, {}});
  EXPECT_EQ(g.retained_bytes(1), 100u);
  EXPECT_EQ(g.retained_bytes(2), 20u + 30 + 40);
  EXPECT_EQ(g.immediate_dominator(1), kRoot);
}

TEST(ReferenceGraph, UnreachableBlocksRetainNothing) {
  ReferenceGraph g;
  record(g, {3, {{0, 1}, {2, 3}}, {}});  // 2 -> 3 is a leaked pair
  EXPECT_FALSE(g.reachable(2));
  EXPECT_FALSE(g.reachable(3));
  EXPECT_EQ(g.retained_bytes(2), 0u);
  EXPECT_EQ(g.immediate_dominator(3), ReferenceGraph::kNone);
  const uint32_t set[] = {2};
  EXPECT_EQ(g.retained_by_set(set, 1), 0u);
}

TEST(ReferenceGraph, RetainerPathsShortestFirstThroughDistinctReferrers) {
  // root -> 1 -> 2 -> 5; root -> 3 -> 4 -> 6 -> 5; root -> 5 directly as well.
  ReferenceGraph g;
  record(g, {6, {{0, 1}, {1, 2}, {2, 5}, {0, 3}, {3, 4}, {4, 6}, {6, 5}, {0, 5}}, {}});
  uint32_t out[32];
  size_t lengths[4];
  uintptr_t roots[4];
  const size_t paths = g.retainer_paths(5, 3, out, 32, lengths, roots);
  ASSERT_EQ(paths, 3u);
  // Directly from a root word.
  EXPECT_EQ(lengths[0], 1u);
  EXPECT_EQ(out[0], 5u);
  EXPECT_EQ(roots[0], 0x1000u + 5 * 8);
  // Through 2: 1 -> 2 -> 5.
  ASSERT_EQ(lengths[1], 3u);
  EXPECT_EQ(std::vector<uint32_t>(out + 1, out + 4), (std::vector<uint32_t>{1, 2, 5}));
  EXPECT_EQ(roots[1], 0x1000u + 1 * 8);
  // Through 6: 3 -> 4 -> 6 -> 5.
  ASSERT_EQ(lengths[2], 4u);
  EXPECT_EQ(std::vector<uint32_t>(out + 4, out + 8), (std::vector<uint32_t>{3, 4, 6, 5}));
  // A limit of one path gives the shortest.
  EXPECT_EQ(g.retainer_paths(5, 1, out, 32, lengths, roots), 1u);
}

TEST(ReferenceGraph, ALongListNeedsNoDeepRecursion) {
  // 200,000 blocks in one chain: a recursive DFS or path compression would overflow the stack.
  constexpr uint32_t kBlocks = 200000;
  Shape shape;
  shape.blocks = kBlocks;
  shape.edges.push_back({0, 1});
  for (uint32_t b = 1; b < kBlocks; ++b) shape.edges.push_back({b, b + 1});
  shape.sizes.assign(kBlocks + 1, 1);
  ReferenceGraph g;
  ASSERT_TRUE(g.prepare(kBlocks * (ReferenceGraph::kBlockRecord + 1), kBlocks));
  ASSERT_TRUE(g.begin(kBlocks));
  g.add_root_edge(1, 0x1000);
  for (uint32_t b = 1; b <= kBlocks; ++b) {
    g.open_block(b, 1, 16, 0);
    if (b < kBlocks) g.add_edge(b + 1);
  }
  ASSERT_TRUE(give_addresses(g, kBlocks));
  ASSERT_TRUE(g.analyse());
  EXPECT_EQ(g.retained_bytes(1), kBlocks);
  EXPECT_EQ(g.retained_bytes(kBlocks / 2), kBlocks - kBlocks / 2 + 1);
  EXPECT_EQ(g.immediate_dominator(kBlocks), kBlocks - 1);
}

TEST(ReferenceGraph, TooManyReferencesIsRefusedNotWrong) {
  ReferenceGraph g;
  ASSERT_TRUE(g.prepare(ReferenceGraph::kBlockRecord + 1, 0));
  ASSERT_TRUE(g.begin(3));
  g.add_root_edge(1, 0x1000);
  g.open_block(1, 10, 16, 0);
  g.add_edge(2);
  g.add_edge(3);  // over capacity
  EXPECT_FALSE(g.complete());
  EXPECT_FALSE(g.analyse());
}

// Brute force: what is unreachable from the root once `removed` is taken out of the graph.
uint64_t unreachable_without(const Shape& shape, uint32_t removed, const std::vector<bool>& reachable) {
  std::vector<std::vector<uint32_t>> out(shape.blocks + 1);
  for (const auto& [from, to] : shape.edges) out[from].push_back(to);
  std::vector<bool> seen(shape.blocks + 1, false);
  std::queue<uint32_t> queue;
  seen[0] = true;
  queue.push(0);
  while (!queue.empty()) {
    const uint32_t v = queue.front();
    queue.pop();
    for (uint32_t w : out[v]) {
      if (seen[w] || w == removed) continue;
      seen[w] = true;
      queue.push(w);
    }
  }
  uint64_t bytes = 0;
  for (uint32_t v = 1; v <= shape.blocks; ++v) {
    if (reachable[v] && !seen[v]) bytes += shape.sizes[v];
  }
  return bytes;
}

TEST(ReferenceGraph, RandomGraphsAgreeWithTheDefinition) {
  std::mt19937 random(12345);
  for (int round = 0; round < 40; ++round) {
    Shape shape;
    shape.blocks = 1 + random() % 60;
    shape.sizes.assign(shape.blocks + 1, 0);
    for (uint32_t b = 1; b <= shape.blocks; ++b) shape.sizes[b] = 1 + random() % 1000;
    const uint32_t roots = 1 + random() % 4;
    for (uint32_t r = 0; r < roots; ++r) shape.edges.push_back({0, 1 + random() % shape.blocks});
    const uint32_t edges = random() % (shape.blocks * 3);
    for (uint32_t e = 0; e < edges; ++e)
      shape.edges.push_back({1 + random() % shape.blocks, 1 + random() % shape.blocks});
    ReferenceGraph g;
    record(g, shape);
    // Breadth-first distances, for the path lengths.
    std::vector<std::vector<uint32_t>> out(shape.blocks + 1);
    for (const auto& [from, to] : shape.edges) out[from].push_back(to);
    std::vector<uint32_t> distance(shape.blocks + 1, UINT32_MAX);
    std::queue<uint32_t> queue;
    distance[0] = 0;
    queue.push(0);
    while (!queue.empty()) {
      const uint32_t v = queue.front();
      queue.pop();
      for (uint32_t w : out[v]) {
        if (distance[w] != UINT32_MAX) continue;
        distance[w] = distance[v] + 1;
        queue.push(w);
      }
    }
    std::vector<bool> reachable(shape.blocks + 1);
    for (uint32_t v = 0; v <= shape.blocks; ++v) reachable[v] = distance[v] != UINT32_MAX;
    for (uint32_t b = 1; b <= shape.blocks; ++b) {
      ASSERT_EQ(g.reachable(b), reachable[b]) << "round " << round << " block " << b;
      const uint64_t expected = reachable[b] ? unreachable_without(shape, b, reachable) : 0;
      ASSERT_EQ(g.retained_bytes(b), expected) << "round " << round << " block " << b;
      const uint32_t set[] = {b};
      ASSERT_EQ(g.retained_by_set(set, 1), expected) << "round " << round << " block " << b;
      if (!reachable[b]) continue;
      uint32_t path[256];
      size_t length = 0;
      uintptr_t root_word = 0;
      ASSERT_EQ(g.retainer_paths(b, 1, path, 256, &length, &root_word), 1u);
      ASSERT_EQ(length, distance[b]) << "round " << round << " block " << b;
      EXPECT_EQ(path[length - 1], b);
      // Each hop is an edge of the graph, and the first block is one a root points at.
      EXPECT_NE(std::find(out[0].begin(), out[0].end(), path[0]), out[0].end());
      for (size_t i = 0; i + 1 < length; ++i) {
        EXPECT_NE(std::find(out[path[i]].begin(), out[path[i]].end(), path[i + 1]), out[path[i]].end());
      }
    }
  }
}

}  // namespace
}  // namespace heapkeeper::collect
