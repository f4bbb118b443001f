// The private heap: heapkeeper's own jemalloc arenas in address space heapkeeper reserved itself.
//
// Two reservations, two kinds of arena:
//  - tracked arenas (one per CPU) serve the program; their extent hooks carve every extent out of
//    the tracked reservation, so each block the program owns is inside [base, end) and the heap's
//    mapped, resident and returned-to-OS bytes can be measured exactly;
//  - one internal arena (jemalloc's arena 0) serves heapkeeper's own allocations (made while the
//    reentrancy guard is held: symbolizing, JSON, libc calls from inside a hook) and jemalloc's
//    thread caches from a second reservation, so they are never tracked, never scanned as heap
//    and never reported.
// The heap also owns the size-class table that the block map uses to know each slab's geometry, and
// decides for each plain request size where the block's header goes (block_header.h): in band, or
// out of band when the block's region is whole pages.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "allocator/address_reservation.h"

namespace heapkeeper::alloc {

// A block's header is 16 bytes, in front of the user's bytes or out of band (block_header.h).
inline constexpr size_t kHeaderSize = 16;
inline constexpr size_t kPageSize = 4096;
inline constexpr unsigned kPageShift = 12;

// Where a block goes: what to ask jemalloc for, and where its header lives.
struct BlockPlacement {
  size_t request;         // bytes asked of jemalloc
  unsigned offset_shift;  // of the header: log2 of the user offset, 0 out of band
  int small_class;        // slab class of the region, or -1: large, or not known before allocating
};

// jemalloc's own view of a set of arenas (its stats, refreshed by an "epoch" write).
struct ArenaFigures {
  uint64_t allocated_bytes = 0;  // in allocated regions (small and large), thread caches' included
  uint64_t active_bytes = 0;     // pages of extents in use: slabs whole, large regions
  uint64_t dirty_bytes = 0;      // freed pages jemalloc keeps, not purged yet (resident)
  uint64_t muzzy_bytes = 0;      // freed pages MADV_FREE'd, resident until the kernel needs them
  uint64_t metadata_bytes = 0;   // jemalloc's base allocations, as it counts them resident
};

struct HeapFigures {
  uint64_t mapped_bytes = 0;    // tracked address space handed to jemalloc
  uint64_t resident_bytes = 0;  // of which resident (mincore)
  uint64_t returned_bytes = 0;  // cumulative bytes purged back to the OS
  uint64_t active_bytes = 0;    // bytes in allocated regions (jemalloc stats)
  uint64_t internal_mapped_bytes = 0;
  uint64_t reserve_bytes = 0;
  ArenaFigures tracked;   // the tracked arenas (their metadata lives in the tracked reservation)
  ArenaFigures internal;  // arena 0: heapkeeper's own allocations and jemalloc's boot metadata
};

class PrivateHeap {
 public:
  static constexpr unsigned kMaxSmallClasses = 64;

  // Reserves the address ranges and creates the arenas. Runs once, with the guard held.
  bool initialize(uint64_t reserve_bytes, unsigned arena_count);

  // The tracked arena of thread number `thread_index` (from 1; 0 for a thread whose state is gone):
  // arenas are shared round-robin, and each is made when a thread first needs it, so a process
  // with one thread pays for one arena's metadata, not one per CPU. Not the hot path: threads
  // ask when they register.
  unsigned tracked_arena_for(unsigned thread_index) const {
    const unsigned slot = (thread_index == 0 ? 0 : thread_index - 1) % arena_count_;
    const unsigned arena = tracked_arenas_[slot].load(std::memory_order_acquire);
    return __builtin_expect(arena < kArenaPending, 1) ? arena : make_tracked_arena(slot);
  }
  // In a forked child: an arena another thread was making when the parent forked is made again.
  void after_fork_in_child();
  unsigned internal_arena() const { return internal_arena_; }
  const AddressReservation& tracked() const { return tracked_; }
  const AddressReservation& internal() const { return internal_; }
  AddressReservation& tracked() { return tracked_; }
  AddressReservation& internal() { return internal_; }

  // Small size classes: region sizes of jemalloc's slabs. Blocks up to small_max() live in slabs.
  size_t small_max() const { return small_max_; }
  unsigned small_class_count() const { return small_class_count_; }
  size_t small_class_size(unsigned index) const { return small_class_size_[index]; }
  // Index of the small class whose region size is exactly `usable`, or -1.
  int small_class_of_usable(size_t usable) const;
  // Small class used by an unaligned request of `total` bytes (total <= small_max()).
  unsigned small_class_for_request(size_t total) const { return request_class_[(total + 15) >> 4]; }
  // Whether a slab class's regions are whole pages (4, 8 and 12 KiB): each starts a page.
  bool whole_page_class(unsigned index) const { return (whole_page_classes_ >> index) & 1; }
  uint64_t whole_page_classes() const { return whole_page_classes_; }
  // Whether blocks whose regions are whole pages keep their headers out of band: true unless
  // jemalloc booted with its cache-oblivious padding (large regions would then start at a random
  // offset into their first page), in which case every header stays in band.
  bool out_of_band_headers() const { return out_of_band_headers_; }

  // Where a block of `size` bytes with at most 16-byte alignment goes: out of band when jemalloc
  // serves `size` itself from whole pages (a 4 KiB, 1 MiB request takes exactly that), or when the
  // header would lift it into a whole-page class (3.5 KiB + 16 takes 4 KiB either way); in band,
  // header included in the request, otherwise. A zero-byte block gets one byte, so that its user
  // pointer lies inside its own region. A table lookup: this is the hot path.
  BlockPlacement place_plain(size_t size) const {
    if (__builtin_expect(size > small_max_, 0)) {
      return out_of_band_headers_ ? BlockPlacement{size, 0, -1} : BlockPlacement{size + kHeaderSize, 4, -1};
    }
    const PlainPlacement p = plain_placement_[(size + 15) >> 4];
    return {size + (p.header_in_band || p.header_in_request ? kHeaderSize : 0) + (size == 0 ? 1 : 0),
            p.header_in_band ? 4u : 0u, p.small_class == kLargeClass ? -1 : static_cast<int>(p.small_class)};
  }
  // The same for an alignment above 16 (a power of two): in band, the header `alignment` bytes in
  // front of the user pointer, unless the region is whole pages. Asks jemalloc (nallocx).
  BlockPlacement place_aligned(size_t size, size_t alignment) const;

  // Without `arena_statistics`, the figures jemalloc's stats give (active_bytes, tracked, internal)
  // stay zero and jemalloc is not asked: its stats refresh clears and merges every arena's.
  HeapFigures figures(bool arena_statistics = true) const;
  // Called by the purge hooks.
  void note_returned(size_t bytes) { returned_bytes_.fetch_add(bytes, std::memory_order_relaxed); }
  uint64_t returned_bytes() const { return returned_bytes_.load(std::memory_order_relaxed); }

 private:
  AddressReservation tracked_;
  AddressReservation internal_;
  // jemalloc's index of each slot's arena, or one of these while it is not made yet.
  static constexpr unsigned kArenaPending = ~0u - 1;  // being made by a thread
  static constexpr unsigned kNoArena = ~0u;
  mutable std::atomic<unsigned> tracked_arenas_[64];
  unsigned make_tracked_arena(unsigned slot) const;
  unsigned arena_count_ = 1;
  unsigned internal_arena_ = 0;
  size_t small_max_ = 0;
  unsigned small_class_count_ = 0;
  size_t small_class_size_[kMaxSmallClasses] = {};
  // (small_max / 16 + 1) entries mapping a rounded request to its class.
  uint8_t request_class_[14336 / 16 + 2] = {};
  uint64_t whole_page_classes_ = 0;
  bool out_of_band_headers_ = false;
  static constexpr uint8_t kLargeClass = 0xff;
  struct PlainPlacement {
    uint8_t small_class;     // kLargeClass: a large region
    bool header_in_band;     // else out of band
    bool header_in_request;  // out of band, but asked for as if in band (the class is the same)
    uint8_t unused;
  };
  // Indexed by (size + 15) / 16, for size <= small_max.
  PlainPlacement plain_placement_[14336 / 16 + 2] = {};
  void fill_plain_placements();
  std::atomic<uint64_t> returned_bytes_{0};
};

PrivateHeap& private_heap();

}  // namespace heapkeeper::alloc
