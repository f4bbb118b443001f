// The 16 bytes heapkeeper keeps for every tracked block.
//
// Most blocks carry them in band: the region jemalloc returns starts with the header, and the
// user's pointer is `user_offset` bytes further (16 normally, the alignment for aligned
// allocations, so the user pointer stays aligned). That costs exactly 16 bytes a block, needs no
// lock and is written in the cache line the program is about to use.
//
// A block whose region is whole pages (jemalloc's large extents, and the slab classes that are
// multiples of the page: 4, 8 and 12 KiB) keeps its header out of band instead, in a side table
// with one header per page (BlockMap). Its user pointer is the region itself (offset_shift 0,
// which no in-band header has), so a 1 MiB request takes exactly 1 MiB instead of lifting the
// region into jemalloc's next size class (1 MiB + 16 bytes would take 1.25 MiB): what matters
// when the address space is limited (`ulimit -v`). Where a block's header lives follows from its
// region's geometry alone; BlockMap::header finds it.
//
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
  // The offset_shift of an out-of-band header: the user pointer is the region.
  static constexpr unsigned kOutOfBandShift = 0;

  uint64_t packed;    // size | log2(user offset), 0 out of band | freed | thread index
  uint32_t stack_id;  // allocation stack (StackTable id), 0 if not recorded
  uint32_t sequence;  // live: low bits of the allocation sequence; freed: the free stack id

  static uint64_t pack(size_t size, unsigned offset_shift, bool freed, uint32_t thread_index) {
    return (static_cast<uint64_t>(size) & kSizeMask) | (static_cast<uint64_t>(offset_shift) << kSizeBits) |
           (static_cast<uint64_t>(freed) << (kSizeBits + kOffsetShiftBits)) |
           (static_cast<uint64_t>(thread_index) << (kSizeBits + kOffsetShiftBits + 1));
  }
  size_t size() const { return packed & kSizeMask; }
  unsigned offset_shift() const { return (packed >> kSizeBits) & ((1u << kOffsetShiftBits) - 1); }
  bool out_of_band() const { return offset_shift() == kOutOfBandShift; }
  // 0 out of band (2^0 masked off), else 2^offset_shift.
  size_t user_offset() const { return (size_t{1} << offset_shift()) & ~size_t{1}; }
  bool freed() const { return (packed >> (kSizeBits + kOffsetShiftBits)) & 1; }
  uint32_t thread_index() const { return static_cast<uint32_t>(packed >> (kSizeBits + kOffsetShiftBits + 1)); }
};
static_assert(sizeof(BlockHeader) == 16);

// The header at the start of a region that carries it in band. Only for callers that know the
// block is in band (the engine's fast paths); everyone else asks BlockMap::header.
inline BlockHeader* in_band_header(uintptr_t region) { return reinterpret_cast<BlockHeader*>(region); }

}  // namespace heapkeeper::alloc
