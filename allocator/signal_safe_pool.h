// SignalSafePool: memory for allocations that arrive while their thread is inside jemalloc (a
// signal handler that allocates, interrupting malloc). Lock-free bump allocation from a reserved
// range, so it is async-signal-safe; blocks are never reused (frees are ignored), which is fine
// for how rarely a signal lands inside jemalloc. Recognised by address in free and realloc.
#pragma once

#include <cstddef>
#include <cstdint>

#include "allocator/address_reservation.h"

namespace heapkeeper::alloc {

class SignalSafePool {
 public:
  bool initialize();
  void* allocate(size_t size, size_t alignment, bool zero) noexcept;
  bool contains(const void* ptr) const noexcept { return range_.size() != 0 && range_.contains(ptr); }
  size_t size_of(const void* ptr) const noexcept;
  size_t used() const noexcept { return range_.used(); }
  const AddressReservation& range() const noexcept { return range_; }

 private:
  AddressReservation range_;
};

SignalSafePool& signal_safe_pool();

}  // namespace heapkeeper::alloc
