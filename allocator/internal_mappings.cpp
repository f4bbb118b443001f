// Implementation of the internal-mapping registry (see internal_mappings.h). A small fixed table
// with atomic slots: registration happens a few dozen times in a process's life.
#include "allocator/internal_mappings.h"
#include "allocator/metadata_prefault.h"

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

// Drops [start, start + length) from whichever registered range holds it: jemalloc trims the head
// and tail of an over-sized mapping to align it, and may unmap a piece from the middle.
void forget_internal_range(uintptr_t start, uintptr_t end) noexcept {
  for (size_t i = 0; i < kSlots; ++i) {
    const uintptr_t low = g_starts[i].load(std::memory_order_acquire);
    const uintptr_t high = g_ends[i].load(std::memory_order_acquire);
    if (low == 0 || high == 0 || end <= low || start >= high) continue;
    if (start <= low && end >= high) {
      g_ends[i].store(0, std::memory_order_release);
      g_starts[i].store(0, std::memory_order_release);
    } else if (start <= low) {
      g_starts[i].store(end, std::memory_order_release);
    } else if (end >= high) {
      g_ends[i].store(start, std::memory_order_release);
    } else {
      g_ends[i].store(start, std::memory_order_release);
      register_internal_mapping(reinterpret_cast<const void*>(end), high - end);
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

// The private jemalloc's own calls to mmap and munmap (renamed to these at build time, see
// cmake/PrivateJemalloc.cmake). Tracked and internal extents come from heapkeeper's reservation
// through extent hooks; what jemalloc still maps itself is its metadata — the radix tree that maps
// addresses to extents and the base blocks holding extent descriptors — and those are full of
// addresses of tracked slabs. Recorded as internal, they are never scanned as roots, which would
// both make the first block of every slab look referenced and read hundreds of MB of mostly
// untouched radix tree on every scan.
extern "C" __attribute__((visibility("hidden"))) void* hk_je_os_mmap(void* address, size_t length, int protection,
                                                                     int flags, int fd, off_t offset) {
  void* p = ::mmap(address, length, protection, flags, fd, offset);
  // MAP_FIXED re-maps memory jemalloc already owns (decommit): nothing new to record.
  if (p != MAP_FAILED && (flags & MAP_FIXED) == 0) {
    heapkeeper::alloc::register_internal_mapping(p, length);
    heapkeeper::alloc::prefault_if_announced(heapkeeper::alloc::MetadataBlock::kBoot, p, length);
  }
  return p;
}

extern "C" __attribute__((visibility("hidden"))) int hk_je_os_munmap(void* address, size_t length) {
  const auto start = reinterpret_cast<uintptr_t>(address);
  heapkeeper::alloc::forget_internal_range(start, start + length);
  return ::munmap(address, length);
}
