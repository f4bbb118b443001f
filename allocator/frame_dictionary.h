// FrameDictionary: every distinct frame word of the stack table stored once, named by an index
// below 2^24, so that a stack-table node keeps 3 bytes for its frame instead of 8.
//
// A tree of callers has many more nodes than distinct frames: python3's imports made 175,000 nodes
// from 17,000 distinct words (6,000 Python frames, 3,700 return addresses, 7,700 chains' words),
// since the same return address and the same Python line sit under many callers. With the frame
// in the node a node took 16 bytes; with its index, 8 (stack_table.h), and the dictionary 8 bytes a distinct word
// and its lookup slots (issue #12: about 0.5 MiB of python3's peak RSS).
//
// Interning is lock-free, as the stack table's: a word is looked up by its hash in levels of
// open-addressing slots (each level twice the last, opened when the newest is half full, so no
// thread waits for a resize), and a new one is written into the dense value array and
// then published by one compare-and-swap. Two threads interning the same new word at once may
// both write it; the loser takes the winner's index, and its own value stays unused. Interning
// runs only when the stack table makes a node; reading a word is one load. All memory is mmap'd
// NORESERVE (none from the tracked heap): untouched, it costs nothing.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace heapkeeper::alloc {

class FrameDictionary {
 public:
  static constexpr uint32_t kNoIndex = 0;
  // The most words an index can name: a slot keeps 24 bits of index beside its 8-bit tag.
  static constexpr uint32_t kMaxIndices = 1u << 24;

  // Maps room for `capacity` words (at most kMaxIndices). False when the memory cannot be had.
  bool initialize(uint32_t capacity);
  // The index of `frame`, stored if new; kNoIndex when the dictionary is full.
  uint32_t intern(uintptr_t frame);
  // The word at `index`, an index intern() returned (to this thread, or to one whose node or slot
  // this thread read with acquire: the value is written before either is published).
  uintptr_t frame(uint32_t index) const { return values_[index]; }
  // Distinct words stored (counting a race's unused copies).
  uint32_t count() const {
    const uint32_t next = next_.load(std::memory_order_relaxed);
    return (next < capacity_ ? next : capacity_) - 1;
  }

 private:
  // Level l has 2^(kFirstShift + l) slots: 4 KiB first, 64 MiB for the last, which holds what the
  // others, half full, cannot (they hold 2^23 - 2^9 words). A program that never makes a stack maps
  // none; python3's imports use six.
  static constexpr unsigned kFirstShift = 10;
  static constexpr unsigned kLevels = 15;
  static_assert(kFirstShift + kLevels - 1 == 24, "the last level has kMaxIndices slots");
  static constexpr unsigned kIndexBits = 24;
  static constexpr uint32_t kIndexMask = (1u << kIndexBits) - 1;
  static_assert(kMaxIndices - 1 <= kIndexMask, "a slot holds an index");
  struct Level {
    std::atomic<std::atomic<uint32_t>*> slots{nullptr};  // tag (8 bits) << 24 | index; 0 = empty
    std::atomic<uint64_t> used{0};
  };
  static uint64_t level_mask(unsigned level) { return (uint64_t{1} << (kFirstShift + level)) - 1; }
  // Level `level`'s slots, mapped now if no thread has mapped them; null when they cannot be.
  std::atomic<uint32_t>* open_level(unsigned level);

  uintptr_t* values_ = nullptr;  // index -> word, written before the index is published; [0] unused
  uint32_t capacity_ = 0;
  std::atomic<uint32_t> next_{1};
  std::atomic<unsigned> newest_{0};
  Level levels_[kLevels];
};

}  // namespace heapkeeper::alloc
