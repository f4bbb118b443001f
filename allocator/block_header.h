// The 16 bytes heapkeeper keeps in front of every tracked block.
//
// Putting the metadata in the block itself costs exactly 16 bytes a block (the budget),
// needs no side table and no lock, and is written in the cache line the program is about to use.
// The region jemalloc returns starts with the header; the user's pointer is `user_offset` bytes
// further: 16 normally, the alignment for aligned allocations (so the user pointer stays aligned).
// After a free the header stays in place with the `freed` bit set and the free stack recorded, so a
// second free of the same pointer can be reported with both stacks.
#pragma once

#include <cstddef>
#include <cstdint>

namespace heapkeeper::alloc {

struct BlockHeader {
  static constexpr unsigned kSizeBits = 43;        // 8 TiB, beyond any reservation
  static constexpr unsigned kOffsetShiftBits = 6;  // alignments up to 2^63
  static constexpr unsigned kThreadBits = 14;
  static constexpr uint64_t kSizeMask = (uint64_t{1} << kSizeBits) - 1;
  static constexpr uint32_t kMaxThreadIndex = (1u << kThreadBits) - 1;

  uint64_t packed;    // size | log2(user offset) | freed | thread index
  uint32_t stack_id;  // allocation stack (StackTable id), 0 if not recorded
  uint32_t sequence;  // live: low bits of the allocation sequence; freed: the free stack id

  static uint64_t pack(size_t size, unsigned offset_shift, bool freed, uint32_t thread_index) {
    return (static_cast<uint64_t>(size) & kSizeMask) | (static_cast<uint64_t>(offset_shift) << kSizeBits) |
           (static_cast<uint64_t>(freed) << (kSizeBits + kOffsetShiftBits)) |
           (static_cast<uint64_t>(thread_index) << (kSizeBits + kOffsetShiftBits + 1));
  }
  size_t size() const { return packed & kSizeMask; }
  unsigned offset_shift() const { return (packed >> kSizeBits) & ((1u << kOffsetShiftBits) - 1); }
  size_t user_offset() const { return size_t{1} << offset_shift(); }
  bool freed() const { return (packed >> (kSizeBits + kOffsetShiftBits)) & 1; }
  uint32_t thread_index() const { return static_cast<uint32_t>(packed >> (kSizeBits + kOffsetShiftBits + 1)); }
};
static_assert(sizeof(BlockHeader) == 16);

inline BlockHeader* header_at(uintptr_t region) { return reinterpret_cast<BlockHeader*>(region); }

}  // namespace heapkeeper::alloc
