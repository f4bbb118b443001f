// Implementation of the lock-free stack table (see stack_table.h).
#include "allocator/stack_table.h"

#include "allocator/internal_mappings.h"
#include "allocator/unloaded_modules.h"

#include <sys/mman.h>

namespace heapkeeper::alloc {
namespace {

StackTable g_stack_table;

void* map_anonymous(size_t bytes) { return map_internal(bytes, true); }

}  // namespace

StackTable& stack_table() { return g_stack_table; }

bool StackTable::initialize(uint64_t address_space_left) {
  arena_words_ = size_t{1} << 28;  // 2 GiB of address space for frames, touched as used
  max_stacks_ = kMaxStacks;
  if (address_space_left != 0) {
    // 1/256 of what is left for frames (1 GiB: 512K frames, some 20,000 stacks of 24), and ids for
    // one stack of 8 frames each.
    const uint64_t words = address_space_left / 256 / sizeof(uintptr_t);
    if (words < arena_words_) arena_words_ = words < 4096 ? 4096 : words;
    while (max_stacks_ > 4096 && max_stacks_ > arena_words_ / 8) max_stacks_ /= 2;
  }
  records_ = static_cast<std::atomic<uint64_t>*>(map_anonymous(sizeof(uint64_t) * max_stacks_));
  allocation_counts_ = static_cast<std::atomic<uint64_t>*>(map_anonymous(sizeof(uint64_t) * max_stacks_));
  generations_ = static_cast<std::atomic<uint32_t>*>(map_anonymous(sizeof(uint32_t) * max_stacks_));
  arena_ = static_cast<uintptr_t*>(map_anonymous(arena_words_ * sizeof(uintptr_t)));
  if (records_ == nullptr || arena_ == nullptr || allocation_counts_ == nullptr || generations_ == nullptr)
    return false;
  auto* first = static_cast<Level*>(map_anonymous(sizeof(Level)));
  if (first == nullptr) return false;
  first->slots = static_cast<std::atomic<uint64_t>*>(map_anonymous(sizeof(uint64_t) << kFirstLevelShift));
  if (first->slots == nullptr) return false;
  first->mask = (uint64_t{1} << kFirstLevelShift) - 1;
  levels_[0].store(first, std::memory_order_release);
  return true;
}

uint64_t StackTable::hash(const uintptr_t* frames, uint32_t depth) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ depth;
  for (uint32_t i = 0; i < depth; ++i) {
    h ^= frames[i];
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 29;
  return h;
}

StackView StackTable::frames(uint32_t id) const {
  if (id == kNoStack || id >= next_id_.load(std::memory_order_acquire) || id >= max_stacks_) return {};
  uint64_t record = records_[id].load(std::memory_order_acquire);
  if (record == 0) return {};
  return {arena_ + (record >> 8), static_cast<uint32_t>(record & 0xff),
          generations_[id].load(std::memory_order_relaxed)};
}

uint64_t StackTable::site_key(uint32_t id) const {
  const StackView view = frames(id);
  if (view.depth == 0) return 0;
  const uint64_t key = hash(view.frames, view.depth);
  // 0 for a stack whose modules are all still mapped: the key is then the plain hash.
  const uint32_t unloaded = first_unload_after(view.frames, view.depth, view.generation);
  return key ^ (uint64_t{unloaded} * 0x9e3779b97f4a7c15ull);
}

uint32_t StackTable::count() const { return next_id_.load(std::memory_order_relaxed) - 1; }

bool StackTable::same_frames(uint32_t id, const uintptr_t* frames, uint32_t depth) const {
  StackView view = this->frames(id);
  if (view.depth != depth) return false;
  for (uint32_t i = 0; i < depth; ++i) {
    if (view.frames[i] != frames[i]) return false;
  }
  return true;
}

bool StackTable::same_code(uint32_t id, const uintptr_t* frames, uint32_t depth, uint32_t generation) {
  std::atomic<uint32_t>& recorded = generations_[id];
  uint32_t seen = recorded.load(std::memory_order_relaxed);
  if (seen == generation) return true;
  if (unloaded_between(frames, depth, seen < generation ? seen : generation, seen < generation ? generation : seen))
    return false;
  // The same code in both generations: keep the newer, so later checks look at fewer unloads.
  while (seen < generation && !recorded.compare_exchange_weak(seen, generation, std::memory_order_relaxed)) {
  }
  return true;
}

StackTable::Level* StackTable::grow(unsigned after) {
  if (after + 1 >= kLevels) return nullptr;
  Level* existing = level(after + 1);
  if (existing != nullptr) return existing;
  auto* fresh = static_cast<Level*>(map_anonymous(sizeof(Level)));
  if (fresh == nullptr) return nullptr;
  unsigned shift = kFirstLevelShift + 2 * (after + 1);
  fresh->slots = static_cast<std::atomic<uint64_t>*>(map_anonymous(sizeof(uint64_t) << shift));
  if (fresh->slots == nullptr) {
    unmap_internal(fresh, sizeof(Level));
    return nullptr;
  }
  fresh->mask = (uint64_t{1} << shift) - 1;
  Level* expected = nullptr;
  if (!levels_[after + 1].compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) {
    unmap_internal(fresh->slots, sizeof(uint64_t) << shift);
    unmap_internal(fresh, sizeof(Level));
    return expected;
  }
  unsigned newest = after;
  newest_.compare_exchange_strong(newest, after + 1, std::memory_order_acq_rel);
  return fresh;
}

uint32_t StackTable::intern(const uintptr_t* frames, uint32_t depth, uint64_t hash, uint32_t generation) {
  const uint64_t tag = (hash >> 32) | 1;  // never 0, so an empty slot is recognisable
  const unsigned newest = newest_.load(std::memory_order_acquire);
  // The slot of a stack with these frames that stands for other code (a library since unloaded):
  // the new stack takes its place, so that a plugin loaded and closed in a loop does not lengthen
  // the probe chain by one stack per cycle. The old id stays valid for the blocks that carry it.
  std::atomic<uint64_t>* replaced_slot = nullptr;
  uint64_t replaced_value = 0;
  // Existing stacks first, newest level first.
  for (unsigned l = newest + 1; l-- > 0;) {
    Level* lv = level(l);
    if (lv == nullptr) continue;
    for (uint64_t i = hash & lv->mask, probes = 0; probes <= lv->mask; i = (i + 1) & lv->mask, ++probes) {
      uint64_t slot = lv->slots[i].load(std::memory_order_acquire);
      if (slot == 0) break;
      const auto id = static_cast<uint32_t>(slot);
      if ((slot >> 32) != tag || !same_frames(id, frames, depth)) continue;
      if (same_code(id, frames, depth, generation)) return id;
      if (replaced_slot == nullptr) {
        replaced_slot = &lv->slots[i];
        replaced_value = slot;
      }
    }
  }

  // New stack: store its frames (or share the replaced stack's: they are the same), then publish
  // (hash, id).
  uint32_t id = next_id_.fetch_add(1, std::memory_order_acq_rel);
  if (id >= max_stacks_) return kNoStack;
  size_t offset = 0;
  if (replaced_slot != nullptr) {
    offset = records_[static_cast<uint32_t>(replaced_value)].load(std::memory_order_acquire) >> 8;
  } else {
    offset = arena_next_.fetch_add(depth, std::memory_order_relaxed);
    if (offset + depth > arena_words_) return kNoStack;
    for (uint32_t i = 0; i < depth; ++i) arena_[offset + i] = frames[i];
  }
  generations_[id].store(generation, std::memory_order_relaxed);
  records_[id].store((static_cast<uint64_t>(offset) << 8) | depth, std::memory_order_release);
  if (replaced_slot != nullptr &&
      replaced_slot->compare_exchange_strong(replaced_value, (tag << 32) | id, std::memory_order_acq_rel)) {
    return id;
  }

  unsigned l = newest;
  Level* lv = level(l);
  while (lv->used.load(std::memory_order_relaxed) * 2 > lv->mask) {
    Level* next = grow(l);
    if (next == nullptr) break;
    lv = next;
    ++l;
  }
  const uint64_t wanted = (tag << 32) | id;
  for (uint64_t i = hash & lv->mask, probes = 0; probes <= lv->mask; i = (i + 1) & lv->mask, ++probes) {
    uint64_t expected = 0;
    if (lv->slots[i].compare_exchange_strong(expected, wanted, std::memory_order_acq_rel)) {
      lv->used.fetch_add(1, std::memory_order_relaxed);
      return id;
    }
    const auto other = static_cast<uint32_t>(expected);
    if ((expected >> 32) == tag && same_frames(other, frames, depth) && same_code(other, frames, depth, generation)) {
      return other;  // another thread won the race; our id stays unused
    }
  }
  return id;  // table full: the id is still valid for frames(), just not findable by lookup
}

}  // namespace heapkeeper::alloc
