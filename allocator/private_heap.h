// The private heap: heapkeeper's own jemalloc arenas in address space heapkeeper reserved itself.
//
// Two reservations, two kinds of arena:
//  - tracked arenas (one per CPU) serve the program; their extent hooks carve every extent out of
//    the tracked reservation, so each block the program owns is inside [base, end) and the heap's
//    mapped, resident and returned-to-OS bytes can be measured exactly;
//  - one internal arena serves heapkeeper's own allocations (made while the reentrancy guard is
//    held: symbolizing, JSON, libc calls from inside a hook) from a second reservation, so they
//    are never tracked, never scanned as heap and never reported.
// The heap also owns the size-class table that the block map uses to know each slab's geometry.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "allocator/address_reservation.h"

namespace heapkeeper::alloc {

// Every block carries a 16-byte header in front of the user's bytes (block_header.h).
inline constexpr size_t kHeaderSize = 16;
inline constexpr size_t kPageSize = 4096;
inline constexpr unsigned kPageShift = 12;

struct HeapFigures {
  uint64_t mapped_bytes = 0;    // tracked address space handed to jemalloc
  uint64_t resident_bytes = 0;  // of which resident (mincore)
  uint64_t returned_bytes = 0;  // cumulative bytes purged back to the OS
  uint64_t active_bytes = 0;    // bytes in allocated regions (jemalloc stats)
  uint64_t internal_mapped_bytes = 0;
  uint64_t reserve_bytes = 0;
};

class PrivateHeap {
 public:
  static constexpr unsigned kMaxSmallClasses = 64;

  // Reserves the address ranges and creates the arenas. Runs once, with the guard held.
  bool initialize(uint64_t reserve_bytes, unsigned arena_count);

  unsigned tracked_arena_for(unsigned thread_index) const { return tracked_arenas_[thread_index % arena_count_]; }
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

  HeapFigures figures() const;
  // Called by the purge hooks.
  void note_returned(size_t bytes) { returned_bytes_.fetch_add(bytes, std::memory_order_relaxed); }

 private:
  AddressReservation tracked_;
  AddressReservation internal_;
  unsigned tracked_arenas_[64] = {};
  unsigned arena_count_ = 1;
  unsigned internal_arena_ = 0;
  size_t small_max_ = 0;
  unsigned small_class_count_ = 0;
  size_t small_class_size_[kMaxSmallClasses] = {};
  // (small_max / 16 + 1) entries mapping a rounded request to its class.
  uint8_t request_class_[14336 / 16 + 2] = {};
  std::atomic<uint64_t> returned_bytes_{0};
};

PrivateHeap& private_heap();

}  // namespace heapkeeper::alloc
