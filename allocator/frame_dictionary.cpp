// Implementation of the frame dictionary (see frame_dictionary.h).
#include "allocator/frame_dictionary.h"

#include "allocator/internal_mappings.h"

namespace heapkeeper::alloc {
namespace {

// The slot a word starts probing at comes from the low bits, the tag that rejects most other
// words without reading their values from the top ones.
inline uint64_t word_hash(uintptr_t frame) {
  uint64_t h = static_cast<uint64_t>(frame) * 0xff51afd7ed558ccdull;
  h ^= h >> 32;
  h *= 0xc4ceb9fe1a85ec53ull;
  return h ^ (h >> 29);
}

}  // namespace

bool FrameDictionary::initialize(uint32_t capacity) {
  capacity_ = capacity < kMaxIndices ? capacity : kMaxIndices;
  values_ = static_cast<uintptr_t*>(map_internal(sizeof(uintptr_t) * capacity_, true));
  return values_ != nullptr && open_level(0) != nullptr;
}

std::atomic<uint32_t>* FrameDictionary::open_level(unsigned level) {
  std::atomic<uint32_t>* slots = levels_[level].slots.load(std::memory_order_acquire);
  if (slots != nullptr) return slots;
  const size_t bytes = sizeof(uint32_t) * (level_mask(level) + 1);
  auto* fresh = static_cast<std::atomic<uint32_t>*>(map_internal(bytes, true));
  if (fresh == nullptr) return nullptr;
  if (!levels_[level].slots.compare_exchange_strong(slots, fresh, std::memory_order_acq_rel)) {
    unmap_internal(fresh, bytes);  // another thread opened it first
    return slots;
  }
  unsigned newest = newest_.load(std::memory_order_relaxed);
  while (newest < level && !newest_.compare_exchange_weak(newest, level, std::memory_order_acq_rel)) {
  }
  return fresh;
}

uint32_t FrameDictionary::intern(uintptr_t frame) {
  if (values_ == nullptr) return kNoIndex;
  const uint64_t key = word_hash(frame);
  const auto tag = static_cast<uint32_t>(key >> 56);
  const auto is_frame = [&](uint32_t slot) {
    return (slot >> kIndexBits) == tag && values_[slot & kIndexMask] == frame;
  };
  // Known: in any level (a race may have put a copy in an older one than the newest).
  const unsigned newest = newest_.load(std::memory_order_acquire);
  for (unsigned l = 0; l <= newest; ++l) {
    const std::atomic<uint32_t>* slots = levels_[l].slots.load(std::memory_order_acquire);
    if (slots == nullptr) continue;
    const uint64_t mask = level_mask(l);
    for (uint64_t i = key & mask, probes = 0; probes <= mask; i = (i + 1) & mask, ++probes) {
      const uint32_t slot = slots[i].load(std::memory_order_acquire);
      if (slot == 0) break;
      if (is_frame(slot)) return slot & kIndexMask;
    }
  }
  // New: its value written, then published by a slot of the newest level with room.
  const uint32_t index = next_.fetch_add(1, std::memory_order_relaxed);
  if (index >= capacity_) return kNoIndex;
  values_[index] = frame;
  const uint32_t wanted = (tag << kIndexBits) | index;
  for (unsigned l = newest; l < kLevels; ++l) {
    std::atomic<uint32_t>* slots = open_level(l);
    if (slots == nullptr) return kNoIndex;
    const uint64_t mask = level_mask(l);
    // A level takes words until half full: a word not in a level is looked for there until an
    // empty slot, in every level, each time a node is made (2.5 slots at half full, 8.5 at three
    // quarters, where python3's imports spent 150 instructions a node). The slots cost 4 bytes,
    // the values 8 (about 16 bytes a word in all): a tenth of what the nodes save.
    if (levels_[l].used.load(std::memory_order_relaxed) * 2 > mask + 1) continue;
    for (uint64_t i = key & mask, probes = 0; probes <= mask; i = (i + 1) & mask, ++probes) {
      uint32_t expected = 0;
      if (slots[i].compare_exchange_strong(expected, wanted, std::memory_order_acq_rel)) {
        levels_[l].used.fetch_add(1, std::memory_order_relaxed);
        return index;
      }
      if (is_frame(expected)) return expected & kIndexMask;  // another thread published it first
    }
  }
  return kNoIndex;
}

}  // namespace heapkeeper::alloc
