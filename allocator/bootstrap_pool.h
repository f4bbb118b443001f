// BootstrapPool: the few allocations made before the private heap exists.
//
// The very first malloc calls of a process can arrive before heapkeeper is set up (from ld.so, or
// from inside heapkeeper's own start-up). They are served from a static buffer, as heaptrack's
// DummyPool does, so start-up never allocates through itself. Later, heapkeeper's own allocations
// that the internal arena cannot serve (no address space left under `ulimit -v`) take what is left
// of it (engine.cpp, allocate_untracked). Pool blocks are never reused; free recognises them by
// address and ignores them.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace heapkeeper::alloc {

class BootstrapPool {
 public:
  static constexpr size_t kCapacity = 1 << 20;
  void* allocate(size_t size, size_t alignment) noexcept;
  bool contains(const void* ptr) const noexcept {
    return reinterpret_cast<uintptr_t>(ptr) - reinterpret_cast<uintptr_t>(buffer_) < kCapacity;
  }
  size_t size_of(const void* ptr) const noexcept;
  size_t used() const noexcept { return next_.load(std::memory_order_relaxed); }

 private:
  alignas(64) unsigned char buffer_[kCapacity];
  std::atomic<size_t> next_{0};
};

BootstrapPool& bootstrap_pool();

}  // namespace heapkeeper::alloc
