// Implementation of the internal-mapping registry (see internal_mappings.h). A small fixed table
// with atomic slots: registration happens a few dozen times in a process's life.
#include "allocator/internal_mappings.h"

#include <sys/mman.h>

#include <atomic>

namespace heapkeeper::alloc {
namespace {

constexpr size_t kSlots = 256;
std::atomic<uintptr_t> g_starts[kSlots];
std::atomic<uintptr_t> g_ends[kSlots];

}  // namespace

void register_internal_mapping(const void* start, size_t length) noexcept {
  const auto begin = reinterpret_cast<uintptr_t>(start);
  for (size_t i = 0; i < kSlots; ++i) {
    uintptr_t expected = 0;
    if (g_starts[i].compare_exchange_strong(expected, begin, std::memory_order_acq_rel)) {
      g_ends[i].store(begin + length, std::memory_order_release);
      return;
    }
  }
}

void unregister_internal_mapping(const void* start) noexcept {
  const auto begin = reinterpret_cast<uintptr_t>(start);
  for (size_t i = 0; i < kSlots; ++i) {
    if (g_starts[i].load(std::memory_order_acquire) == begin) {
      g_ends[i].store(0, std::memory_order_release);
      g_starts[i].store(0, std::memory_order_release);
      return;
    }
  }
}

size_t internal_mappings(MappedRange* out, size_t capacity) noexcept {
  size_t count = 0;
  for (size_t i = 0; i < kSlots; ++i) {
    uintptr_t start = g_starts[i].load(std::memory_order_acquire);
    uintptr_t end = g_ends[i].load(std::memory_order_acquire);
    if (start == 0 || end == 0) continue;
    if (count < capacity) out[count] = {start, end};
    ++count;
  }
  return count;
}

void* map_internal(size_t length, bool noreserve) noexcept {
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | (noreserve ? MAP_NORESERVE : 0);
  void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  register_internal_mapping(p, length);
  return p;
}

void unmap_internal(void* start, size_t length) noexcept {
  unregister_internal_mapping(start);
  ::munmap(start, length);
}

}  // namespace heapkeeper::alloc
