// BlockMap: which addresses of the tracked heap are live blocks, and the O(1) way from any
// address inside a block to its start.
//
// Two side structures over the tracked reservation, both mapped NORESERVE so they cost memory only
// where the heap is used:
//  - a live bitmap, one bit per 16-byte granule (0.8% of the heap), set while a block starts there.
//    It is the authority for "is this a live block" (free and the collector check it) and lets the
//    collector enumerate every live block without a registry;
//  - a page map, 4 bytes per 4 KiB page, describing the geometry of what covers the page: for a
//    jemalloc slab, the region size and one region boundary (all regions of a slab are the same
//    size and contiguous, so one boundary gives them all); for a large block, how many pages back
//    its first page is and where in that page it starts.
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
  void record(uintptr_t region, size_t usable, int small_class);
  // Clears the live bit; returns false if it was not set (not a live block).
  bool retire(uintptr_t region);
  bool is_live(uintptr_t region) const;

  // Start of the live block's region containing `address` (header included), or 0.
  uintptr_t find_region(uintptr_t address) const;
  // For a conservative scanner: the live block that a word holding `address` refers to, counting
  // the address one past the block's last byte as a reference, as Boehm GC's extra byte does. C
  // lets a program keep a pointer one past the end of an array, and some keep only that (jq's
  // `mem_end`, "one past the end of the allocated region"). Such an address lands in the block's
  // slack, or on the next region's header: when it is both one past block A's end and inside the
  // region of block B, it refers to both, and A comes back in `also` (0 otherwise).
  uintptr_t find_referenced(uintptr_t address, uintptr_t& also) const;
  // Starts loading what find_region(address) will read (its page-map entry and, when `address` is
  // a block's user pointer as most pointers are, the header in front of it), for a scanner that
  // resolves a batch of words at a time.
  void prefetch_lookup(uintptr_t address) const {
    __builtin_prefetch(&pages_[(address - base_) >> kPageShift]);
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
  void record_small(uintptr_t region, size_t usable, unsigned class_index);
  void record_large(uintptr_t region, size_t usable);

  uintptr_t base_ = 0;
  size_t size_ = 0;
  std::atomic<uint32_t>* pages_ = nullptr;
  std::atomic<uint64_t>* live_bits_ = nullptr;
  const PrivateHeap* heap_ = nullptr;
  uint32_t class_size_[64] = {};
  uint64_t class_reciprocal_[64] = {};  // for remainder by multiplication (Lemire's fastmod)
};

BlockMap& block_map();

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
