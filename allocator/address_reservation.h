// A contiguous range of address space that heapkeeper reserves once and hands out by bumping.
//
// The tracked heap and heapkeeper's internal heap each live in one reservation, so "is this
// pointer ours, and whose" is a range check, and the collector can tell heap memory from roots.
//
// Without an address-space limit the whole range is mapped read-write with MAP_NORESERVE up
// front: untouched pages cost nothing, and a stray read of a page jemalloc has not used yet sees
// zeros instead of faulting. Under `ulimit -v` (RLIMIT_AS) that is impossible — the limit counts
// every mapping, even PROT_NONE and MAP_NORESERVE ones, and the program needs the room for its own
// mmaps, stacks and libraries — so the range is only a window: a stretch of address space chosen
// far below where the kernel places mappings (verified free at start-up), of which each piece is
// mapped when it is handed out. Nothing else maps there in practice (the kernel fills the space
// below the libraries top-down, tens of TiB away); if something ever does, that piece fails like
// an exhausted heap, never overlaps. Pieces are page-granular then, and never unmapped.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace heapkeeper::alloc {

class AddressReservation {
 public:
  // Reserves `size` bytes (halving down to `minimum_size` if the kernel refuses). Under an
  // address-space limit, claims a window of `size` bytes instead, but no larger than what the
  // process may still map (and at least `minimum_size`). False if nothing fits.
  bool reserve(size_t size, size_t minimum_size);

  // Hands out `size` bytes aligned to `alignment` (a power of two), or nullptr when exhausted (or,
  // for a window, when the kernel refuses to map the piece: the address-space limit is reached).
  // Lock-free and async-signal-safe: jemalloc calls this from its extent hooks on any thread, the
  // signal-safe pool from signal handlers.
  void* take(size_t size, size_t alignment);
  // Extends the last piece handed out in place: succeeds only when `address` is the current end.
  bool take_at(void* address, size_t size);

  bool contains(const void* address) const { return reinterpret_cast<uintptr_t>(address) - base_ < size_; }
  uintptr_t base() const { return base_; }
  size_t size() const { return size_; }
  uintptr_t end() const { return base_ + size_; }
  // Bytes handed out so far ("mapped" from the arenas' point of view).
  size_t used() const { return next_.load(std::memory_order_relaxed) - base_; }
  // True for a window whose pieces are mapped as they are handed out (an address-space limit).
  bool maps_on_demand() const { return maps_on_demand_; }

 private:
  bool claim_window(size_t size);
  // Maps [start, start + size) of a window; false if the kernel refuses.
  static bool map_piece(uintptr_t start, size_t size);

  uintptr_t base_ = 0;
  size_t size_ = 0;
  bool maps_on_demand_ = false;
  std::atomic<uintptr_t> next_{0};
};

// What the process may still map under RLIMIT_AS (its soft limit minus its current size), or 0
// when there is no limit. Read once, at the first reservation.
uint64_t address_space_left() noexcept;

}  // namespace heapkeeper::alloc
