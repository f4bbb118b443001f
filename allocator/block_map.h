// BlockMap: which addresses of the tracked heap are live blocks, and the O(1) way from any
// address inside a block to its start.
//
// Three side structures over the tracked reservation, all mapped NORESERVE so they cost memory only
// where the heap is used:
//  - a live bitmap, one bit per 16-byte granule (0.8% of the heap), set while a block starts there.
//    It is the authority for "is this a live block" (free and the collector check it) and lets the
//    collector enumerate every live block without a registry;
//  - a page map, 4 bytes per 4 KiB page, describing the geometry of what covers the page: for a
//    jemalloc slab, the region size and one region boundary (all regions of a slab are the same
//    size and contiguous, so one boundary gives them all); for a large block, how many pages back
//    its first page is and where in that page it starts;
//  - the out-of-band headers, 16 bytes per page (0.4% of the heap), for blocks whose region is whole
//    pages (block_header.h): a large region, or a slab region of a whole-page class. Which regions
//    those are follows from the page map, so `header` finds any block's header in O(1).
// Finding the block for an interior address is then arithmetic plus one bit test and one header
// read — no search, whatever the block size.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "allocator/block_header.h"
#include "allocator/private_heap.h"

namespace heapkeeper::alloc {

class BlockMap {
 public:
  bool initialize(const PrivateHeap& heap);

  // Records a block whose jemalloc region is [region, region + usable). `small_class` is the
  // slab class index, or -1 for a large (page-run) region. Call after the header is written.
  // Inline: every allocation records its block, and a slab region's record is usually a compare.
  void record(uintptr_t region, size_t usable, int small_class) {
    if (region - base_ >= size_ || usable > size_ - (region - base_)) return;  // not in the heap: never recorded
    if (__builtin_expect(small_class >= 0, 1))
      record_small(region, usable, static_cast<unsigned>(small_class));
    else
      record_large(region, usable);
    const uintptr_t granule = (region - base_) >> 4;
    live_bits_[granule >> 6].fetch_or(uint64_t{1} << (granule & 63), std::memory_order_release);
  }
  // Clears the live bit; returns false if it was not set (not a live block).
  bool retire(uintptr_t region);
  bool is_live(uintptr_t region) const;

  // The header of the block recorded at `region` (live, or freed and not yet reused): out of band
  // when the region is whole pages, at its start otherwise. The one way to read a block's header.
  BlockHeader* header(uintptr_t region) const {
    if ((region & (kPageSize - 1)) != 0) return in_band_header(region);
    return out_of_band(page_entry(region)) ? out_of_band_header(region) : in_band_header(region);
  }
  // Whether the region recorded at `region` (which starts a page) keeps its header out of band.
  bool has_out_of_band_header(uintptr_t region) const {
    return (region & (kPageSize - 1)) == 0 && out_of_band(page_entry(region));
  }
  // The out-of-band header slot of the page starting at `region`, for the engine to write before it
  // records a whole-page block, and for bad-free reports to read after its free.
  BlockHeader* out_of_band_header(uintptr_t region) const { return &headers_[(region - base_) >> kPageShift]; }

  // The region size of the block recorded at `region` when its page map entry says it (a slab
  // region: its class's size); 0 for a large region, whose size only jemalloc knows.
  size_t slab_region_size(uintptr_t region) const {
    const uint32_t entry = page_entry(region);
    return (entry >> kKindShift) == kKindSmall ? class_size_[(entry >> 16) & 0x3f] : 0;
  }
  // Start of the live block's region containing `address` (header included), or 0.
  uintptr_t find_region(uintptr_t address) const;
  // For a conservative scanner: the live block that a word holding `address` refers to, counting
  // the address one past the block's last byte as a reference, as Boehm GC's extra byte does. C
  // lets a program keep a pointer one past the end of an array, and some keep only that (jq's
  // `mem_end`, "one past the end of the allocated region"). Such an address lands in the block's
  // slack, or, when the block fills its region exactly, on the next region's start: the header of
  // an in-band block B, which no program points at (the word refers to the block before alone), or
  // the user pointer of a whole-page block B, which is B's own pointer (the word refers to B
  // alone). Counting such a word for both blocks hid every leaked block right in front of a block
  // in use once power-of-two requests (4 KiB buffers, a FILE's, a vector's) filled their regions
  // exactly; the price of the second case is block_map.cpp's to state.
  uintptr_t find_referenced(uintptr_t address) const;
  // Starts loading what find_region(address) will read (its page-map entry and, when `address` is
  // a block's user pointer as most pointers are, the header in front of it), for a scanner that
  // resolves a batch of words at a time.
  void prefetch_lookup(uintptr_t address) const {
    __builtin_prefetch(&pages_[(address - base_) >> kPageShift]);
    if ((address & (kPageSize - 1)) == 0)
      __builtin_prefetch(&headers_[(address - base_) >> kPageShift]);
    else
      __builtin_prefetch(reinterpret_cast<const void*>(address - kHeaderSize));
  }

  // Calls visit(region) for each live block, in address order. Not synchronised with concurrent
  // allocation: callers either stop the world or accept a moving picture.
  template <typename Visitor>
  void for_each_live(Visitor&& visit) const;

  // For the collector's side bitmaps, which share the live bitmap's layout: one bit per 16-byte
  // granule from heap_base(), 64 granules a word.
  size_t word_count() const { return (heap_->tracked().used() / 16 + 63) / 64; }
  uint64_t live_word(size_t index) const { return live_bits_[index].load(std::memory_order_acquire); }
  static size_t granule_of(uintptr_t region, uintptr_t base) { return (region - base) >> 4; }

  uintptr_t heap_base() const { return base_; }
  size_t heap_size() const { return size_; }

 private:
  static constexpr uint32_t kKindShift = 30;
  static constexpr uint32_t kKindSmall = 1;
  static constexpr uint32_t kKindLarge = 2;
  static constexpr uint32_t kLargeBackShift = 12;
  static constexpr uint32_t kLargeBackMax = (1u << 18) - 1;

  // find_region, with `address` one past the block's end counted as inside it when `end_inclusive`.
  uintptr_t locate(uintptr_t address, bool end_inclusive) const;
  // The page-map entry of the page holding `address` (in the heap).
  uint32_t page_entry(uintptr_t address) const {
    if (address - base_ >= size_) return 0;
    return pages_[(address - base_) >> kPageShift].load(std::memory_order_relaxed);
  }
  // Whether a block starting the page that `entry` describes keeps its header out of band: a large
  // region, or a region of a whole-page slab class.
  bool out_of_band(uint32_t entry) const {
    const uint32_t kind = entry >> kKindShift;
    if (kind == kKindLarge) return large_out_of_band_;
    return kind == kKindSmall && ((whole_page_classes_ >> ((entry >> 16) & 0x3f)) & 1) != 0;
  }
  inline void record_small(uintptr_t region, size_t usable, unsigned class_index);
  void record_large(uintptr_t region, size_t usable);

  uintptr_t base_ = 0;
  size_t size_ = 0;
  std::atomic<uint32_t>* pages_ = nullptr;
  std::atomic<uint64_t>* live_bits_ = nullptr;
  BlockHeader* headers_ = nullptr;
  uint64_t whole_page_classes_ = 0;  // slab classes whose blocks keep their headers out of band
  bool large_out_of_band_ = false;   // and large regions (PrivateHeap::out_of_band_headers)
  const PrivateHeap* heap_ = nullptr;
  uint32_t class_size_[64] = {};
  uint64_t class_reciprocal_[64] = {};  // for remainder by multiplication (Lemire's fastmod)
};

BlockMap& block_map();

// A slab page's entry names the slab's class and its first region boundary at or after the page's
// start (an offset below the class size): the same for every region of the slab that touches the
// page, so the entry is written when the page's slab changes, and each later allocation from it
// only reads the entry back. (Recording the allocated region's own offset instead, as before,
// disagreed with the entry at almost every allocation and took a division to find the two on one
// grid: some 90 instructions an allocation, and a call.)
void BlockMap::record_small(uintptr_t region, size_t usable, unsigned class_index) {
  const uint32_t size = class_size_[class_index];
  const uint32_t kind_and_class = (kKindSmall << kKindShift) | (class_index << 16);
  uintptr_t page = (region - base_) >> kPageShift;
  const uintptr_t last_page = (region + usable - 1 - base_) >> kPageShift;
  // In the region's first page the boundary is its offset there modulo the size (Lemire's
  // remainder by multiplication, exact below 2^32); in any later page the region began less than
  // `size` bytes before the page, so the boundary is the region's end there, less than `size` in.
  const auto within = static_cast<uint32_t>(region & (kPageSize - 1));
  uint32_t boundary =
      static_cast<uint32_t>((static_cast<__uint128_t>(class_reciprocal_[class_index] * within) * size) >> 64);
  for (;;) {
    const uint32_t wanted = kind_and_class | boundary;
    if (pages_[page].load(std::memory_order_relaxed) != wanted) pages_[page].store(wanted, std::memory_order_relaxed);
    if (++page > last_page) return;
    boundary = static_cast<uint32_t>(region + size - (base_ + (page << kPageShift)));
  }
}

template <typename Visitor>
void BlockMap::for_each_live(Visitor&& visit) const {
  size_t words = (heap_->tracked().used() / 16 + 63) / 64;
  for (size_t w = 0; w < words; ++w) {
    uint64_t bits = live_bits_[w].load(std::memory_order_acquire);
    while (bits != 0) {
      unsigned bit = static_cast<unsigned>(__builtin_ctzll(bits));
      bits &= bits - 1;
      visit(base_ + ((w * 64 + bit) << 4));
    }
  }
}

}  // namespace heapkeeper::alloc
