// StackTable: every distinct allocation stack stored once, named by a 32-bit id.
//
// Blocks carry only the id. Interning is lock-free: a stack's frames are appended to an arena, its
// (hash, id) pair is published into an open-addressing table with one compare-and-swap. The table
// grows by adding a four-times-larger level when the newest is half full, so no thread ever waits
// for a resize; lookups probe the newest level first. A race can intern the same stack twice under
// two ids, which reports merge by content. All memory is mmap'd: none comes from the tracked heap.
//
// Each stack also keeps the module generation it was captured in (allocator/unloaded_modules.h):
// after a dlclose the same return addresses may be code of another library, so a lookup reuses a
// stack of another generation only when no module holding one of its frames was unloaded in
// between (and then moves its generation forward: both name the same code). A library unloaded and
// another loaded at its addresses therefore gives new ids to the stacks through it, and only those;
// the new stack takes the old one's slot and shares its frames (the old id stays valid), so a plugin
// reloaded in a loop costs 20 bytes (an id) per stack and reload, and no longer probe chains.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace heapkeeper::alloc {

struct StackView {
  const uintptr_t* frames = nullptr;
  uint32_t depth = 0;
  uint32_t generation = 0;  // module generation the frames are to be named in (unloaded_modules.h)
};

class StackTable {
 public:
  static constexpr uint32_t kNoStack = 0;
  static constexpr uint32_t kMaxStacks = 1u << 24;

  // Maps the table's address space: room for kMaxStacks stacks and 2 GiB of frames, or, when the
  // process may map only `address_space_left` more bytes (RLIMIT_AS; 0 = no limit), about 0.5% of
  // that. Untouched, the mappings cost no memory, but under a limit they cost the program room.
  bool initialize(uint64_t address_space_left = 0);
  static uint64_t hash(const uintptr_t* frames, uint32_t depth);
  // Returns the id of this stack as captured in module generation `generation` (the value of
  // module_generation() read before the capture), interning it if new; kNoStack if the table is full.
  uint32_t intern(const uintptr_t* frames, uint32_t depth, uint64_t hash, uint32_t generation);
  StackView frames(uint32_t id) const;
  // What reports group allocation sites by: equal exactly when two stacks have the same frames and
  // name them in the same modules (ids of one stack interned twice under a race, or in generations
  // between which none of its modules was unloaded, share it). Not the interning hash.
  uint64_t site_key(uint32_t id) const;
  // Allocations made from each stack, for allocation rates per site. Plain load and store, not an
  // atomic add: two threads counting the same stack at the same instant may lose one count, which
  // is cheaper on the hot path than a shared read-modify-write and good enough for a rate.
  void count_allocation(uint32_t id) {
    if (id < max_stacks_)
      allocation_counts_[id].store(allocation_counts_[id].load(std::memory_order_relaxed) + 1,
                                   std::memory_order_relaxed);
  }
  uint64_t allocations(uint32_t id) const {
    return id < max_stacks_ ? allocation_counts_[id].load(std::memory_order_relaxed) : 0;
  }
  uint32_t count() const;  // ids handed out so far (including duplicates from races)

 private:
  static constexpr unsigned kLevels = 8;
  static constexpr unsigned kFirstLevelShift = 12;
  struct Level {
    std::atomic<uint64_t>* slots;
    uint64_t mask;
    std::atomic<uint64_t> used;
  };

  Level* level(unsigned index) const { return levels_[index].load(std::memory_order_acquire); }
  Level* grow(unsigned after);
  bool same_frames(uint32_t id, const uintptr_t* frames, uint32_t depth) const;
  // Whether stack `id` (whose frames equal `frames`) may stand for a capture in `generation`;
  // moves its generation forward when it may.
  bool same_code(uint32_t id, const uintptr_t* frames, uint32_t depth, uint32_t generation);

  std::atomic<Level*> levels_[kLevels] = {};
  std::atomic<unsigned> newest_{0};
  std::atomic<uint32_t> next_id_{1};
  std::atomic<uint64_t>* records_ = nullptr;            // id -> (frame offset << 8 | depth)
  std::atomic<uint64_t>* allocation_counts_ = nullptr;  // id -> allocations
  std::atomic<uint32_t>* generations_ = nullptr;        // id -> module generation
  uint32_t max_stacks_ = kMaxStacks;
  uintptr_t* arena_ = nullptr;
  size_t arena_words_ = 0;
  std::atomic<size_t> arena_next_{0};
};

StackTable& stack_table();

}  // namespace heapkeeper::alloc
