// A contiguous range of address space that heapkeeper reserves once and hands out by bumping.
//
// The tracked heap and heapkeeper's internal heap each live in one reservation, so "is this
// pointer ours, and whose" is a range check, and the collector can tell heap memory from roots.
// The range is mapped read-write with MAP_NORESERVE up front: untouched pages cost nothing, and a
// stray read of a page jemalloc has not used yet sees zeros instead of faulting.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace heapkeeper::alloc {

class AddressReservation {
 public:
  // Maps `size` bytes (halving down to `minimum_size` if the kernel refuses). False if nothing fits.
  bool reserve(size_t size, size_t minimum_size);

  // Hands out `size` bytes aligned to `alignment` (a power of two), or nullptr when exhausted.
  // Lock-free: jemalloc calls this from its extent hooks on any thread.
  void* take(size_t size, size_t alignment);
  // Extends the last piece handed out in place: succeeds only when `address` is the current end.
  bool take_at(void* address, size_t size);

  bool contains(const void* address) const { return reinterpret_cast<uintptr_t>(address) - base_ < size_; }
  uintptr_t base() const { return base_; }
  size_t size() const { return size_; }
  uintptr_t end() const { return base_ + size_; }
  // Bytes handed out so far ("mapped" from the arenas' point of view).
  size_t used() const { return next_.load(std::memory_order_relaxed) - base_; }

 private:
  uintptr_t base_ = 0;
  size_t size_ = 0;
  std::atomic<uintptr_t> next_{0};
};

}  // namespace heapkeeper::alloc
