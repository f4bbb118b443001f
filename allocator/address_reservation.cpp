// Implementation of AddressReservation (see address_reservation.h).
#include "allocator/address_reservation.h"

#include <sys/mman.h>

namespace heapkeeper::alloc {

bool AddressReservation::reserve(size_t size, size_t minimum_size) {
  for (; size >= minimum_size; size /= 2) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) continue;
    base_ = reinterpret_cast<uintptr_t>(p);
    size_ = size;
    next_.store(base_, std::memory_order_relaxed);
    return true;
  }
  return false;
}

void* AddressReservation::take(size_t size, size_t alignment) {
  uintptr_t current = next_.load(std::memory_order_relaxed);
  for (;;) {
    uintptr_t start = (current + alignment - 1) & ~(uintptr_t{alignment} - 1);
    if (start < current || start - base_ > size_ || size > size_ - (start - base_)) return nullptr;
    if (next_.compare_exchange_weak(current, start + size, std::memory_order_relaxed)) {
      return reinterpret_cast<void*>(start);
    }
  }
}

bool AddressReservation::take_at(void* address, size_t size) {
  uintptr_t start = reinterpret_cast<uintptr_t>(address);
  uintptr_t expected = start;
  if (start - base_ > size_ || size > size_ - (start - base_)) return false;
  return next_.compare_exchange_strong(expected, start + size, std::memory_order_relaxed);
}

}  // namespace heapkeeper::alloc
