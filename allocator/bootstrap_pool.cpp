// Implementation of the bootstrap pool (see bootstrap_pool.h). Each block is preceded by its size
// so realloc can move it into the private heap later.
#include "allocator/bootstrap_pool.h"

#include <cerrno>
#include <cstring>

namespace heapkeeper::alloc {
namespace {
BootstrapPool g_pool;
}

BootstrapPool& bootstrap_pool() { return g_pool; }

void* BootstrapPool::allocate(size_t size, size_t alignment) noexcept {
  if (alignment < 16) alignment = 16;
  size_t current = next_.load(std::memory_order_relaxed);
  for (;;) {
    size_t start = (current + 16 + alignment - 1) & ~(alignment - 1);  // room for the size prefix
    if (size > kCapacity || start + size > kCapacity) {
      errno = ENOMEM;
      return nullptr;
    }
    if (next_.compare_exchange_weak(current, start + size, std::memory_order_relaxed)) {
      std::memcpy(buffer_ + start - sizeof(size_t), &size, sizeof(size_t));
      return buffer_ + start;  // static storage: already zero, so calloc needs nothing more
    }
  }
}

size_t BootstrapPool::size_of(const void* ptr) const noexcept {
  size_t size;
  std::memcpy(&size, static_cast<const unsigned char*>(ptr) - sizeof(size_t), sizeof(size_t));
  return size;
}

}  // namespace heapkeeper::alloc
