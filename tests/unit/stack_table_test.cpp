// Unit tests for StackTable (allocator/stack_table.h): lock-free interning of allocation stacks
// as paths in a tree of (caller, frame) nodes.
//
// The table is a process singleton, initialised once for the suite; each test uses frame values
// of its own (a distinct high "salt") so that tests never see each other's stacks. Under concurrent
// interning the same stack may get two ids (stack_table.h allows it and reports merge by content);
// the tests assert content, and deduplication only single-threaded.
#include "allocator/stack_table.h"

#include "allocator/python_frame_word.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <random>
#include <set>
#include <thread>
#include <unordered_set>
#include <vector>

namespace heapkeeper::alloc {
namespace {

using Stack = std::vector<uintptr_t>;

class StackTableTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    static const bool ready = stack_table().initialize();
    ASSERT_TRUE(ready) << "could not map the stack table";
  }

  static StackTable& table() { return stack_table(); }

  static uint32_t intern(const Stack& stack, uint32_t generation = 0) {
    return table().intern(stack.data(), static_cast<uint32_t>(stack.size()), generation);
  }

  static Stack frames_of(uint32_t id) {
    const StackView view = table().frames(id);
    return Stack(view.frames, view.frames + view.depth);
  }

  // A stack that looks like return addresses: distinct per (salt, index), depth 1..max_depth.
  static Stack make_stack(uint64_t salt, uint64_t index, uint32_t max_depth = 24) {
    uint64_t state = salt * 0x9e3779b97f4a7c15ull + index;
    auto random = [&state] {  // splitmix64: cheap enough to rebuild a stack whenever it is needed
      uint64_t z = (state += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      return z ^ (z >> 31);
    };
    const uint32_t depth = 1 + static_cast<uint32_t>(random() % max_depth);
    Stack stack(depth);
    for (uint32_t i = 0; i < depth; ++i) stack[i] = 0x400000 + (random() & 0xffffffffffull);
    stack[0] = (salt << 40) | (index << 8) | depth;  // makes the stack unique to (salt, index)
    return stack;
  }

  // Threads start together and each interns stacks make(0 .. count) once, in an order of its own,
  // so that they race to make the same nodes; returns the ids handed out for each stack, every one
  // checked to walk back to exactly the frames it was returned for.
  template <typename Make>
  static std::vector<std::set<uint32_t>> race_to_intern(int thread_count, uint64_t count, const Make& make) {
    std::vector<std::vector<std::pair<uint64_t, uint32_t>>> results(static_cast<size_t>(thread_count));
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < thread_count; ++t) {
      threads.emplace_back([&, t] {
        std::vector<uint64_t> order(count);
        for (uint64_t i = 0; i < count; ++i) order[i] = i;
        std::shuffle(order.begin(), order.end(), std::mt19937_64(static_cast<uint64_t>(t) + 100));
        std::vector<Stack> stacks;
        for (uint64_t index : order) stacks.push_back(make(index));
        ready.fetch_add(1);
        while (ready.load() < thread_count) std::this_thread::yield();
        auto& mine = results[static_cast<size_t>(t)];
        for (size_t i = 0; i < stacks.size(); ++i) mine.emplace_back(order[i], intern(stacks[i]));
      });
    }
    for (auto& thread : threads) thread.join();
    std::vector<std::set<uint32_t>> ids_of(count);
    for (const auto& mine : results) {
      for (auto [index, id] : mine) {
        EXPECT_NE(id, StackTable::kNoStack);
        EXPECT_EQ(frames_of(id), make(index)) << "id " << id << " returned for stack " << index;
        if (id != StackTable::kNoStack) ids_of[index].insert(id);
      }
    }
    return ids_of;
  }

  // After threads raced to intern stacks (ids_of[index]: the ids handed out for stack `index`, made
  // by `make`): no id was handed out for two different stacks, and, single-threaded again, each
  // stack resolves to one stable id among those handed out for it (with `same_site_keys`, whose site
  // key is that of the others).
  template <typename Make>
  static void expect_one_stable_id_per_stack(const std::vector<std::set<uint32_t>>& ids_of, Make&& make,
                                             bool same_site_keys) {
    std::set<uint32_t> seen;
    size_t ids_total = 0;
    for (const auto& ids : ids_of) {
      ids_total += ids.size();
      seen.insert(ids.begin(), ids.end());
    }
    EXPECT_EQ(seen.size(), ids_total) << "no id was handed out for two different stacks";
    for (uint64_t index = 0; index < ids_of.size(); ++index) {
      if (ids_of[index].empty()) continue;
      const Stack stack = make(index);
      const uint32_t id = intern(stack);
      EXPECT_EQ(intern(stack), id);
      EXPECT_EQ(ids_of[index].count(id), 1u) << "stack " << index;
      if (same_site_keys) {
        EXPECT_EQ(table().site_key(id), table().site_key(*ids_of[index].begin()));
      }
    }
  }
};

TEST_F(StackTableTest, IdenticalStacksGetTheSameId) {
  const Stack stack = {0x401000, 0x402000, 0x403000, (uint64_t{1} << 40)};
  const uint32_t id = intern(stack);
  ASSERT_NE(id, StackTable::kNoStack);
  const uint32_t count = table().count();
  EXPECT_EQ(intern(stack), id);
  EXPECT_EQ(intern(Stack(stack)), id) << "same frames in another buffer";
  EXPECT_EQ(table().count(), count) << "no new id for a known stack";
}

TEST_F(StackTableTest, DifferentStacksGetDifferentIds) {
  const uint64_t salt = uint64_t{2} << 40;
  const Stack base = {salt | 1, 0x402000, 0x403000, 0x404000};
  Stack one_frame_differs = base;
  one_frame_differs[2] += 1;
  const Stack prefix(base.begin(), base.begin() + 3);
  Stack longer = base;
  longer.push_back(0x405000);
  Stack reversed(base.rbegin(), base.rend());
  const Stack single = {salt | 1};
  std::set<uint32_t> ids;
  for (const Stack* s :
       std::initializer_list<const Stack*>{&base, &one_frame_differs, &prefix, &longer, &reversed, &single}) {
    const uint32_t id = intern(*s);
    ASSERT_NE(id, StackTable::kNoStack);
    ids.insert(id);
    EXPECT_EQ(frames_of(id), *s);
  }
  EXPECT_EQ(ids.size(), 6u);
}

TEST_F(StackTableTest, FramesRoundTrip) {
  for (uint32_t depth : {1u, 2u, 24u, 127u, 128u}) {
    Stack stack = make_stack(3, depth, 1);
    stack.resize(depth);
    for (uint32_t i = 1; i < depth; ++i) stack[i] = 0x7f0000000000ull + i * 0x10 + depth;
    const uint32_t id = intern(stack);
    ASSERT_NE(id, StackTable::kNoStack) << depth;
    EXPECT_EQ(frames_of(id), stack) << depth;
    EXPECT_EQ(table().frames(id).depth, depth);
  }
}

TEST_F(StackTableTest, UnknownIdsHaveNoFrames) {
  EXPECT_EQ(table().frames(StackTable::kNoStack).depth, 0u);
  EXPECT_EQ(table().frames(table().node_count() + 1).depth, 0u);
  EXPECT_EQ(table().frames(table().node_count() + 1000).depth, 0u);
  EXPECT_EQ(table().frames(StackTable::kMaxStacks).depth, 0u);
  EXPECT_EQ(table().frames(UINT32_MAX).depth, 0u);
}

TEST_F(StackTableTest, HashDependsOnEveryFrameAndTheDepth) {
  const Stack a = {1, 2, 3, 4};
  Stack b = a;
  b[3] = 5;
  EXPECT_EQ(StackTable::hash(a.data(), 4), StackTable::hash(Stack(a).data(), 4));
  EXPECT_NE(StackTable::hash(a.data(), 4), StackTable::hash(b.data(), 4));
  EXPECT_NE(StackTable::hash(a.data(), 4), StackTable::hash(a.data(), 3));
  const Stack zeros(8, 0);
  EXPECT_NE(StackTable::hash(zeros.data(), 7), StackTable::hash(zeros.data(), 8));
}

// Stacks sharing their outer frames share the nodes of those frames: a stack that extends a known
// one by an inner frame costs one node, and the shorter stack is a node of the longer one's path.
TEST_F(StackTableTest, StacksSharingOuterFramesShareNodes) {
  const uint64_t salt = uint64_t{5} << 40;
  const Stack outer = {salt | 3, salt | 2, salt | 1};  // innermost first: salt|1 is the outermost
  const uint32_t nodes_before = table().node_count();
  const uint32_t outer_id = intern(outer);
  ASSERT_NE(outer_id, StackTable::kNoStack);
  EXPECT_EQ(table().node_count() - nodes_before, 3u);
  Stack inner = outer;
  inner.insert(inner.begin(), salt | 4);
  const uint32_t inner_id = intern(inner);
  EXPECT_EQ(table().node_count() - nodes_before, 4u) << "only the new innermost frame is a new node";
  EXPECT_EQ(frames_of(inner_id), inner);
  EXPECT_EQ(frames_of(outer_id), outer);
  // A sibling: another innermost frame under the same callers.
  Stack sibling = outer;
  sibling.insert(sibling.begin(), salt | 5);
  const uint32_t sibling_id = intern(sibling);
  EXPECT_EQ(table().node_count() - nodes_before, 5u);
  EXPECT_EQ(frames_of(sibling_id), sibling);
  // A prefix interned after the longer stack is a node already made: no node, but a new stack.
  const uint32_t stacks_before = table().count();
  const Stack middle(outer.begin() + 1, outer.end());
  const uint32_t middle_id = intern(middle);
  EXPECT_EQ(table().node_count() - nodes_before, 5u);
  EXPECT_EQ(table().count(), stacks_before + 1) << "a node handed out as a stack for the first time";
  EXPECT_EQ(frames_of(middle_id), middle);
  EXPECT_EQ(intern(middle), middle_id);
  EXPECT_EQ(table().count(), stacks_before + 1);
  EXPECT_EQ(std::set<uint32_t>({outer_id, inner_id, sibling_id, middle_id}).size(), 4u);
}

// A new stack under known callers (in a Python program: a new call site, with the C frames
// between it and malloc) is placed under its innermost known caller, found a few frames out, or
// else from the root: either way exactly its new frames become nodes, under the right callers.
TEST_F(StackTableTest, NewInnermostFramesUnderKnownCallersAreTheOnlyNewNodes) {
  const uint64_t salt = uint64_t{11} << 40;
  Stack callers;  // innermost first
  for (uint64_t i = 20; i > 0; --i) callers.push_back(salt | i);
  ASSERT_NE(intern(callers), StackTable::kNoStack);
  const Stack middle(callers.begin() + 5, callers.end());  // a node, never handed out as a stack
  for (uint64_t fresh = 1; fresh <= 12; ++fresh) {         // within the probed distance and beyond it
    for (const Stack& under : {callers, middle}) {
      Stack stack = under;
      for (uint64_t k = 0; k < fresh; ++k) stack.insert(stack.begin(), salt | (fresh << 20) | (under.size() << 12) | k);
      const uint32_t nodes_before = table().node_count();
      const uint32_t id = intern(stack);
      ASSERT_NE(id, StackTable::kNoStack);
      EXPECT_EQ(table().node_count() - nodes_before, fresh) << fresh << " new frames under " << under.size();
      EXPECT_EQ(frames_of(id), stack);
      EXPECT_EQ(intern(stack), id);
      EXPECT_EQ(table().node_count() - nodes_before, fresh);
    }
  }
  // The callers' own stacks are unchanged by what was placed under them.
  EXPECT_EQ(frames_of(intern(callers)), callers);
  EXPECT_EQ(frames_of(intern(middle)), middle);
}

// The C calls inside a stack's innermost Python frame (the eval loop's callees down to malloc) are
// one chain, shared by every stack ending in them: a new Python call site over known C calls costs
// its own node and the chain's word, not a copy of the C frames. frames() gives the whole stack
// back, and site keys are those of the frames (reports group as before).
TEST_F(StackTableTest, NativeFramesInsideTheInnermostPythonFrameAreAChainSharedByEveryStack) {
  const uint64_t salt = uint64_t{13} << 40;
  const Stack c_calls = {salt | 4, salt | 3, salt | 2, salt | 1};  // PyObject_Malloc ... PyDict_New
  const auto python_stack = [&](uint64_t unit) {
    Stack stack = c_calls;
    for (uintptr_t frame : {python_word::make(salt | 0x77, unit), python_word::make(salt | 0x78, 9), salt | 0x100})
      stack.push_back(frame);
    return stack;
  };
  const uint32_t nodes_before = table().node_count();
  const uint32_t first = intern(python_stack(1));
  ASSERT_NE(first, StackTable::kNoStack);
  EXPECT_EQ(table().node_count() - nodes_before, 4u + 3u + 1u) << "the chain, the outer frames, the chain's word";
  EXPECT_EQ(frames_of(first), python_stack(1));
  std::set<uint32_t> ids = {first};
  for (uint64_t unit = 2; unit <= 50; ++unit) {
    const uint32_t before = table().node_count();
    const uint32_t id = intern(python_stack(unit));
    ASSERT_NE(id, StackTable::kNoStack);
    EXPECT_EQ(table().node_count() - before, 2u) << "a new instruction: its Python frame and the chain's word";
    EXPECT_EQ(frames_of(id), python_stack(unit));
    EXPECT_EQ(intern(python_stack(unit)), id);
    const Stack frames = python_stack(unit);
    EXPECT_EQ(table().site_key(id), StackTable::hash(frames.data(), static_cast<uint32_t>(frames.size())));
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 50u);
  // One native frame inside the Python frame is no chain (a word would cost as much as the frame).
  const Stack single = {salt | 9, python_word::make(salt | 0x77, 1), python_word::make(salt | 0x78, 9), salt | 0x100};
  const uint32_t before_single = table().node_count();
  const uint32_t single_id = intern(single);
  EXPECT_EQ(table().node_count() - before_single, 1u);
  EXPECT_EQ(frames_of(single_id), single);
  // The same C calls under a Python frame of another stack: the chain is found, not made.
  const Stack other = {salt | 4, salt | 3, salt | 2, salt | 1, python_word::make(salt | 0x79, 3), salt | 0x101};
  const uint32_t before_other = table().node_count();
  const uint32_t other_id = intern(other);
  EXPECT_EQ(table().node_count() - before_other, 3u);
  EXPECT_EQ(frames_of(other_id), other);
}

// A native stack of an interpreter ends its chain at its innermost return address into the eval
// loop, where the merged stack has the Python frames: the two share the chain.
TEST_F(StackTableTest, AReturnAddressIntoTheEvalLoopEndsAChainAsAPythonFrameDoes) {
  const uint64_t salt = uint64_t{14} << 40;
  table().set_chain_boundary(salt | 0x1000, salt | 0x2000);  // this test's frames only: its salt
  const Stack native = {salt | 5, salt | 4, salt | 3, salt | 0x1800, salt | 0x50, salt | 0x1900, salt | 0x100};
  const Stack merged = {salt | 5,    salt | 4,
                        salt | 3,    python_word::make(salt | 0x66, 1),
                        salt | 0x50, python_word::make(salt | 0x67, 2),
                        salt | 0x100};
  const uint32_t before = table().node_count();
  const uint32_t native_id = intern(native);
  EXPECT_EQ(table().node_count() - before, 3u + 4u + 1u);
  const uint32_t merged_id = intern(merged);
  EXPECT_EQ(table().node_count() - before, 3u + 4u + 1u + 4u) << "the chain of three frames and the root made once";
  EXPECT_EQ(frames_of(native_id), native);
  EXPECT_EQ(frames_of(merged_id), merged);
  EXPECT_NE(native_id, merged_id);
  // A return address just past the range is not the eval loop's.
  const Stack outside = {salt | 5, salt | 4, salt | 3, salt | 0x2001, salt | 0x100};
  const uint32_t before_outside = table().node_count();
  EXPECT_EQ(frames_of(intern(outside)), outside);
  EXPECT_EQ(table().node_count() - before_outside, 4u) << "no chain: every frame but the root is a node";
}

// An unwinder that steps by a frame pointer through code without unwind information reads
// whatever the "frame record" holds: a double of 2.0 or more (bits 63..62 = 01, as a chain's word
// has them) comes out as a return address. Such a frame is the program's, kept as captured: it
// neither loses its stack (a word naming a chain past the table) nor drops out (a chain of no
// frames) nor brings in another stack's frames (the word of a real chain), in a native stack, in
// the C calls of a chain or among a chained stack's outer frames.
TEST_F(StackTableTest, FramesThatLookLikeAChainsWordAreKeptAsCaptured) {
  const uint64_t salt = uint64_t{16} << 40;
  const uintptr_t chain_tag = uintptr_t{1} << 62;
  const Stack c_calls = {salt | 3, salt | 2, salt | 1};
  const Stack chained = {salt | 3, salt | 2, salt | 1, python_word::make(salt | 0x70, 4), salt | 0x100};
  const uint32_t chained_id = intern(chained);
  ASSERT_NE(chained_id, StackTable::kNoStack);
  const uint32_t chain_id = intern(c_calls);  // the chain's path: the same frames as a stack of its own
  ASSERT_NE(chain_id, StackTable::kNoStack);
  double three = 3.0;
  uintptr_t three_bits = 0;
  static_assert(sizeof three == sizeof three_bits);
  __builtin_memcpy(&three_bits, &three, sizeof three);
  ASSERT_EQ(three_bits >> 62, 1u);
  const std::vector<Stack> stacks = {
      {salt | 0x10, three_bits},            // a word naming a chain far past the table
      {salt | 0x11, chain_tag},             // a word naming no node: 2.0
      {salt | 0x12, chain_tag | chain_id},  // a real chain's word, in a native stack
      {chain_tag | chain_id, python_word::make(salt | 0x70, 4), salt | 0x100},  // as the chained stack's outer path
      {salt | 5, three_bits, salt | 4, python_word::make(salt | 0x71, 1), salt | 0x100},            // in a chain
      {salt | 6, salt | 5, python_word::make(salt | 0x72, 1), chain_tag | chain_id, salt | 0x100},  // outside it
  };
  for (const Stack& stack : stacks) {
    const uint32_t id = intern(stack);
    ASSERT_NE(id, StackTable::kNoStack);
    EXPECT_NE(id, chained_id);
    EXPECT_EQ(frames_of(id), stack);
    EXPECT_EQ(intern(stack), id);
    EXPECT_EQ(table().site_key(id), StackTable::hash(stack.data(), static_cast<uint32_t>(stack.size())));
  }
  EXPECT_EQ(frames_of(chained_id), chained);
  EXPECT_EQ(intern(chained), chained_id);
}

// Threads race to intern Python stacks over a few shared chains: every id walks back to exactly
// its frames, chains included.
TEST_F(StackTableTest, ConcurrentInterningOfChainedStacksGivesConsistentFrames) {
  constexpr int kThreads = 6;
  constexpr uint64_t kStacks = 4'000;
  const uint64_t salt = uint64_t{15} << 40;
  const auto make = [salt](uint64_t i) {
    Stack stack;
    for (uint64_t k = 0; k < 2 + i % 5; ++k) stack.push_back(salt | (i % 7) << 12 | k);  // one of 35 chains
    stack.push_back(python_word::make(salt | (i % 97), i / 97));
    stack.push_back(python_word::make(salt | 0x5000, i % 3));
    stack.push_back(salt | 0xfff);
    return stack;
  };
  expect_one_stable_id_per_stack(race_to_intern(kThreads, kStacks, make), make, true);
}

// Allocation counts are 64-bit, kept as an 8-bit low part per node and the rest in an array
// written on a wrap.
TEST_F(StackTableTest, AllocationCountsCarryPastFourBillion) {
  const uint64_t salt = uint64_t{12} << 40;
  const uint32_t id = intern({salt | 2, salt | 1});
  ASSERT_NE(id, StackTable::kNoStack);
  EXPECT_EQ(table().allocations(id), 0u);
  for (int i = 0; i < 5; ++i) table().count_allocation(id);
  EXPECT_EQ(table().allocations(id), 5u);
  // Counted one by one past the low part's wraps, from 0 to 1,000.
  table().set_allocations_for_testing(id, 0);
  for (int i = 0; i < 1000; ++i) {
    table().count_allocation(id);
    ASSERT_EQ(table().allocations(id), static_cast<uint64_t>(i) + 1);
  }
  table().set_allocations_for_testing(id, (uint64_t{1} << 32) - 2);
  for (int i = 0; i < 5; ++i) table().count_allocation(id);
  EXPECT_EQ(table().allocations(id), (uint64_t{1} << 32) + 3);
  table().set_allocations_for_testing(id, (uint64_t{7} << 32) - 1);
  table().count_allocation(id);
  EXPECT_EQ(table().allocations(id), uint64_t{7} << 32);
  table().count_allocation(StackTable::kMaxStacks);  // beyond the table: ignored
  EXPECT_EQ(table().allocations(StackTable::kMaxStacks), 0u);
}

// A frame is a node under its callers, not a frame alone: the same innermost frame called through
// different callers gives different stacks, and so do the same frames in another order.
TEST_F(StackTableTest, TheSameInnermostFrameUnderOtherCallersIsAnotherStack) {
  const uint64_t salt = uint64_t{6} << 40;
  const uintptr_t leaf = salt | 0xabc;
  std::set<uint32_t> ids;
  std::vector<Stack> stacks;
  for (uint64_t caller = 0; caller < 300; ++caller) {  // many children of one node, and many parents
    stacks.push_back({leaf, salt | (0x1000 + caller), salt | 0x7});
    stacks.push_back({leaf, salt | 0x7, salt | (0x1000 + caller)});
  }
  for (const Stack& stack : stacks) {
    const uint32_t id = intern(stack);
    ASSERT_NE(id, StackTable::kNoStack);
    ids.insert(id);
    EXPECT_EQ(frames_of(id), stack);
  }
  EXPECT_EQ(ids.size(), stacks.size());
  for (const Stack& stack : stacks) EXPECT_EQ(frames_of(intern(stack)), stack);
  EXPECT_EQ(table().site_key(intern(stacks[0])), table().site_key(intern(Stack(stacks[0]))));
  EXPECT_NE(table().site_key(intern(stacks[0])), table().site_key(intern(stacks[2])));
}

// Every frame of the deepest stack is a node: walking its parents gives the frames back, and the
// frames past the deepest view are dropped, innermost kept.
TEST_F(StackTableTest, StacksDeeperThanAViewKeepTheirInnermostFrames) {
  Stack deep(StackView::kMaxDepth + 10);
  for (size_t i = 0; i < deep.size(); ++i) deep[i] = (uint64_t{9} << 40) | (i + 1);
  const uint32_t id = intern(deep);
  ASSERT_NE(id, StackTable::kNoStack);
  EXPECT_EQ(frames_of(id), Stack(deep.begin(), deep.begin() + StackView::kMaxDepth));
}

// 200k distinct stacks (some 2.5 M nodes): the table adds several levels (4096 slots, then x2 each
// time it is three quarters full); nodes interned into older levels stay findable, and every id keeps its
// frames.
TEST_F(StackTableTest, ManyDistinctStacksGrowTheTableAndStayFindable) {
  constexpr uint64_t kStacks = 200'000;
  const uint32_t count_before = table().count();
  std::vector<uint32_t> ids(kStacks);
  for (uint64_t i = 0; i < kStacks; ++i) {
    ids[i] = intern(make_stack(7, i));
    ASSERT_NE(ids[i], StackTable::kNoStack) << i;
  }
  EXPECT_EQ(table().count() - count_before, kStacks);
  EXPECT_EQ(std::unordered_set<uint32_t>(ids.begin(), ids.end()).size(), kStacks);
  for (uint64_t i = 0; i < kStacks; ++i) {
    const Stack stack = make_stack(7, i);
    ASSERT_EQ(frames_of(ids[i]), stack) << i;
    ASSERT_EQ(intern(stack), ids[i]) << "stack " << i << " is no longer found";
  }
  EXPECT_EQ(table().count() - count_before, kStacks) << "re-interning created new ids";
}

// Eight threads intern overlapping sets of stacks, each in its own order. A race may give one
// stack two ids; every id must still carry exactly the frames it was returned for, and after the
// race each stack resolves to a single id again.
TEST_F(StackTableTest, ConcurrentInterningReturnsIdsWithTheRightFrames) {
  constexpr int kThreads = 8;
  constexpr uint64_t kUniverse = 40'000;
  constexpr uint64_t kPerThread = 15'000;
  std::vector<std::vector<std::pair<uint64_t, uint32_t>>> results(kThreads);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<uint64_t> order(kPerThread);
      for (uint64_t i = 0; i < kPerThread; ++i) order[i] = (static_cast<uint64_t>(t) * 4'000 + i) % kUniverse;
      std::shuffle(order.begin(), order.end(), std::mt19937_64(static_cast<uint64_t>(t)));
      std::vector<Stack> stacks;
      stacks.reserve(kPerThread);
      for (uint64_t index : order) stacks.push_back(make_stack(8, index));
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();  // start together: maximise races
      auto& mine = results[static_cast<size_t>(t)];
      mine.reserve(kPerThread * 2);
      for (int pass = 0; pass < 2; ++pass) {
        for (size_t i = 0; i < stacks.size(); ++i) mine.emplace_back(order[i], intern(stacks[i]));
      }
    });
  }
  for (auto& thread : threads) thread.join();

  std::vector<std::set<uint32_t>> ids_of(kUniverse);
  for (const auto& mine : results) {
    ASSERT_EQ(mine.size(), kPerThread * 2);
    for (auto [index, id] : mine) {
      ASSERT_NE(id, StackTable::kNoStack);
      ASSERT_EQ(frames_of(id), make_stack(8, index)) << "id " << id << " returned for stack " << index;
      ids_of[index].insert(id);
    }
  }
  expect_one_stable_id_per_stack(
      ids_of, [](uint64_t index) { return make_stack(8, index); }, false);
}

// Threads intern stacks that share their outer frames in a few patterns, so that they race to make
// the same inner nodes: every id must walk back to exactly the frames it was returned for (a node
// made twice in a race has the right parent either way), and the stacks resolve to one id afterwards.
TEST_F(StackTableTest, ConcurrentInterningOfSharedPrefixesGivesConsistentFrames) {
  constexpr int kThreads = 6;
  constexpr uint64_t kStacks = 6'000;
  const uint64_t salt = uint64_t{10} << 40;
  const auto make = [salt](uint64_t i) {
    Stack stack;  // innermost first
    stack.push_back(salt | (0x100000 + i));
    for (uint64_t level = 6; level > 0; --level) stack.push_back(salt | (level << 16) | (i % (level * 3)));
    stack.push_back(salt | 1);
    return stack;
  };
  expect_one_stable_id_per_stack(race_to_intern(kThreads, kStacks, make), make, true);
}

}  // namespace
}  // namespace heapkeeper::alloc
