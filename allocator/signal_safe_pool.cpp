// Implementation of the signal-safe pool (see signal_safe_pool.h). Each block is preceded by its
// size; memory is fresh from the reservation and never reused, so it is already zero.
#include "allocator/signal_safe_pool.h"

#include <cerrno>
#include <cstring>

namespace heapkeeper::alloc {
namespace {
SignalSafePool g_pool;
}

SignalSafePool& signal_safe_pool() { return g_pool; }

bool SignalSafePool::initialize() { return range_.reserve(size_t{256} << 20, size_t{16} << 20); }

void* SignalSafePool::allocate(size_t size, size_t alignment, bool) noexcept {
  if (alignment < 16) alignment = 16;
  if (size > range_.size()) {
    errno = ENOMEM;
    return nullptr;
  }
  auto* raw = static_cast<unsigned char*>(range_.take(size + alignment + 16, 16));
  if (raw == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  const uintptr_t user = (reinterpret_cast<uintptr_t>(raw) + 16 + alignment - 1) & ~(uintptr_t{alignment} - 1);
  std::memcpy(reinterpret_cast<void*>(user - sizeof(size_t)), &size, sizeof(size_t));
  return reinterpret_cast<void*>(user);
}

size_t SignalSafePool::size_of(const void* ptr) const noexcept {
  size_t size;
  std::memcpy(&size, static_cast<const unsigned char*>(ptr) - sizeof(size_t), sizeof(size_t));
  return size;
}

}  // namespace heapkeeper::alloc
