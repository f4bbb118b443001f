// Implementation of the live bitmap and page map (see block_map.h).
//
// Page-map entries are rewritten only when they disagree with the block being recorded (record and
// record_small, in block_map.h), so that threads allocating from the same slab do not keep dirtying
// the same cache line. A stale entry is
// harmless: every lookup ends with the live-bit test and a bounds check against the header, and
// any live block that overlaps a page has written that page's entry after the page's previous
// owner was freed (its free happened before jemalloc could hand the memory out again).
#include "allocator/block_map.h"

#include <sys/mman.h>

#include "allocator/internal_mappings.h"
#include "allocator/private_heap.h"

namespace heapkeeper::alloc {
namespace {

BlockMap g_block_map;

void* map_side_table(size_t bytes) { return map_internal(bytes, true); }

}  // namespace

BlockMap& block_map() { return g_block_map; }

bool BlockMap::initialize(const PrivateHeap& heap) {
  heap_ = &heap;
  base_ = heap.tracked().base();
  size_ = heap.tracked().size();
  pages_ = static_cast<std::atomic<uint32_t>*>(map_side_table((size_ >> kPageShift) * sizeof(uint32_t)));
  live_bits_ = static_cast<std::atomic<uint64_t>*>(map_side_table(size_ / 16 / 8));
  headers_ = static_cast<BlockHeader*>(map_side_table((size_ >> kPageShift) * sizeof(BlockHeader)));
  if (pages_ == nullptr || live_bits_ == nullptr || headers_ == nullptr) return false;
  whole_page_classes_ = heap.out_of_band_headers() ? heap.whole_page_classes() : 0;
  large_out_of_band_ = heap.out_of_band_headers();
  for (unsigned i = 0; i < heap.small_class_count(); ++i) {
    class_size_[i] = static_cast<uint32_t>(heap.small_class_size(i));
    class_reciprocal_[i] = UINT64_MAX / class_size_[i] + 1;
  }
  return true;
}

void BlockMap::record_large(uintptr_t region, size_t usable) {
  const uintptr_t first_page = (region - base_) >> kPageShift;
  const uintptr_t last_page = (region + usable - 1 - base_) >> kPageShift;
  const uint32_t in_page = static_cast<uint32_t>(region & (kPageSize - 1));
  for (uintptr_t page = first_page; page <= last_page; ++page) {
    uintptr_t back = page - first_page;
    // Beyond 2^18 pages (1 GiB) an entry points back as far as it can; lookup follows the chain.
    uint32_t back_field = back > kLargeBackMax ? kLargeBackMax : static_cast<uint32_t>(back);
    uint32_t wanted = (kKindLarge << kKindShift) | (back_field << kLargeBackShift) | in_page;
    if (pages_[page].load(std::memory_order_relaxed) != wanted) pages_[page].store(wanted, std::memory_order_relaxed);
  }
}

bool BlockMap::retire(uintptr_t region) {
  const uintptr_t granule = (region - base_) >> 4;
  const uint64_t bit = uint64_t{1} << (granule & 63);
  return (live_bits_[granule >> 6].fetch_and(~bit, std::memory_order_acq_rel) & bit) != 0;
}

bool BlockMap::is_live(uintptr_t region) const {
  if (region - base_ >= size_ || (region & 15) != 0) return false;
  const uintptr_t granule = (region - base_) >> 4;
  return (live_bits_[granule >> 6].load(std::memory_order_acquire) >> (granule & 63)) & 1;
}

// Inlined into both lookups: the scanner calls find_referenced for every heap-looking word.
__attribute__((always_inline)) inline uintptr_t BlockMap::locate(uintptr_t address, bool end_inclusive) const {
  if (address - base_ >= size_) return 0;
  uintptr_t page = (address - base_) >> kPageShift;
  uint32_t entry = pages_[page].load(std::memory_order_relaxed);
  uintptr_t region;
  switch (entry >> kKindShift) {
    case kKindSmall: {
      const unsigned class_index = (entry >> 16) & 0xff;
      const uint32_t size = class_size_[class_index];
      if (size == 0) return 0;
      const intptr_t boundary =
          static_cast<intptr_t>(base_ + (page << kPageShift)) + static_cast<int16_t>(entry & 0xffff);
      const intptr_t distance = static_cast<intptr_t>(address) - boundary;
      // Division by the class size as a multiplication (Lemire): exact for distances below 2^32.
      const uint64_t reciprocal = class_reciprocal_[class_index];
      auto quotient = [&](uint64_t n) {
        return static_cast<intptr_t>((static_cast<__uint128_t>(reciprocal) * n) >> 64);
      };
      intptr_t steps = distance >= 0 ? quotient(static_cast<uint64_t>(distance))
                                     : -quotient(static_cast<uint64_t>(-distance + size - 1));
      region = static_cast<uintptr_t>(boundary + steps * static_cast<intptr_t>(size));
      break;
    }
    case kKindLarge: {
      for (;;) {
        uint32_t back = (entry >> kLargeBackShift) & kLargeBackMax;
        if (back < kLargeBackMax) {
          page -= back;
          break;
        }
        if (page < back) return 0;
        page -= back;
        entry = pages_[page].load(std::memory_order_relaxed);
        if ((entry >> kKindShift) != kKindLarge) return 0;
      }
      region = base_ + (page << kPageShift) + (entry & (kPageSize - 1));
      break;
    }
    default:
      return 0;
  }
  // With jemalloc's cache-oblivious layout (off in heapkeeper's), large regions start at a
  // random cache-line offset into their first page: bytes in front of the region belong to no block.
  if (address < region || !is_live(region)) return 0;
  // The header's place follows from the page map entry of the region's own page, which the live
  // block wrote when it was recorded (the address's page may hold a stale entry).
  const BlockHeader* header = this->header(region);
  // A zero-byte block still owns its user pointer: programs keep malloc(0) results alive too.
  const size_t size = header->size() == 0 ? 1 : header->size();
  const uintptr_t end = region + header->user_offset() + size;
  if (address > end || (address == end && !(end_inclusive && header->size() != 0))) return 0;
  return region;
}

uintptr_t BlockMap::find_region(uintptr_t address) const { return locate(address, false); }

uintptr_t BlockMap::find_referenced(uintptr_t address) const {
  const uintptr_t region = locate(address, true);
  // The start of a live whole-page block is that block's own pointer (its header is out of band),
  // not one past the end of the block before. The price: a block the program keeps only through a
  // pointer one past its end is taken for leaked when it fills its region exactly and a whole-page
  // block in use follows it.
  if (region != 0 && region == address && has_out_of_band_header(region)) return region;
  // One past a block's end is a region boundary only when the block fills its region exactly; then
  // the address is the start of the next region (live or not) or of bytes no block owns. Region
  // boundaries are multiples of 16, and anything else was settled by the lookup above (an address
  // in a block's slack belongs to that block's region), so the common case pays one lookup. The
  // start of an in-band block's region is its header, which no pointer of the program's points
  // at: there, one past the end of the block before is what the word is.
  if ((region == 0 || region == address) && (address & 15) == 0) {
    const uintptr_t before = locate(address - 1, true);
    if (before != 0) {
      const BlockHeader* header = this->header(before);
      if (before + header->user_offset() + header->size() == address) return before;
    }
  }
  return region;
}

}  // namespace heapkeeper::alloc
