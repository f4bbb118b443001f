// Implementation of AddressReservation (see address_reservation.h).
#include "allocator/address_reservation.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>

namespace heapkeeper::alloc {
namespace {

constexpr uintptr_t kPage = 4096;
// The first window starts on a GiB boundary; the next ones follow it closely (on 2 MiB boundaries,
// jemalloc's extent alignment), so that small windows share the GiB: jemalloc keeps a 2 MiB radix
// leaf for each GiB its extents touch, and that metadata counts under the limit too.
constexpr uintptr_t kWindowAlignment = uintptr_t{1} << 30;
constexpr uintptr_t kNextWindowAlignment = uintptr_t{2} << 20;
constexpr int kAnonymous = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;

uintptr_t align_up(uintptr_t value, uintptr_t alignment) { return (value + alignment - 1) & ~(alignment - 1); }

// The process's current size in bytes (the first field of /proc/self/statm, in pages); 0 if
// unreadable. Parsed in place: this runs before any heap exists.
uint64_t current_size() {
  const int fd = ::open("/proc/thread-self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char text[128];
  const ssize_t length = ::read(fd, text, sizeof(text) - 1);
  ::close(fd);
  uint64_t pages = 0;
  for (ssize_t i = 0; i < length && text[i] >= '0' && text[i] <= '9'; ++i) pages = pages * 10 + (text[i] - '0');
  return pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

uint64_t read_address_space_left() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 0;
  const uint64_t size = current_size();
  // At or over the limit already: still a window (of the minimum size), whose pieces will fail.
  return limit.rlim_cur > size ? limit.rlim_cur - size : 1;
}

// Whether nothing is mapped in [start, start + size): a fixed mapping that may not replace
// anything fails with EEXIST on any overlap, before the limit is checked; ENOMEM means the range is
// free but larger than the limit lets the process map. Nothing stays mapped.
bool range_is_free(uintptr_t start, size_t size) {
  void* p = ::mmap(reinterpret_cast<void*>(start), size, PROT_NONE, kAnonymous | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) return errno == ENOMEM;
  ::munmap(p, size);
  return p == reinterpret_cast<void*>(start);  // a kernel without MAP_FIXED_NOREPLACE puts it elsewhere
}

// Where the next window may start: windows are laid out one after the other from the first one
// found. Written at start-up only (the engine's initialisation), before other threads allocate.
uintptr_t g_window_cursor = 0;

// A free stretch of `size` bytes, far below where the kernel places mappings: it fills the
// address space top-down from just below the stack, so halfway down (or a quarter, an eighth...)
// it will not reach in the life of a process held to a limit. 0 if none is found.
uintptr_t find_window(size_t size) {
  if (g_window_cursor != 0) {
    const uintptr_t start = align_up(g_window_cursor, kNextWindowAlignment);
    if (range_is_free(start, size)) return start;
  }
  void* probe = ::mmap(nullptr, kPage, PROT_NONE, kAnonymous, -1, 0);
  if (probe == MAP_FAILED) return 0;
  ::munmap(probe, kPage);
  const auto top = reinterpret_cast<uintptr_t>(probe);
  constexpr uintptr_t kLowest = uintptr_t{4} << 30;  // clear of a non-PIE program and its brk heap
  for (uintptr_t ceiling = top / 2; ceiling > size && ceiling - size >= kLowest; ceiling /= 2) {
    const uintptr_t start = (ceiling - size) & ~(kWindowAlignment - 1);
    if (start >= kLowest && range_is_free(start, size)) return start;
  }
  return 0;
}

}  // namespace

uint64_t address_space_left() noexcept {
  static const uint64_t left = read_address_space_left();
  return left;
}

bool AddressReservation::reserve(size_t size, size_t minimum_size) {
  if (address_space_left() != 0) return claim_window(size);
  for (; size >= minimum_size; size /= 2) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, kAnonymous, -1, 0);
    if (p == MAP_FAILED) continue;
    base_ = reinterpret_cast<uintptr_t>(p);
    size_ = size;
    next_.store(base_, std::memory_order_relaxed);
    return true;
  }
  return false;
}

bool AddressReservation::claim_window(size_t size) {
  // A window costs nothing until used, but the tables that describe the tracked heap are sized
  // for it (and count under the limit): no larger than what the process may still map.
  const uint64_t left = align_up(address_space_left(), kPage);
  if (size > left) size = left;
  size = align_up(size, kPage);
  const uintptr_t start = find_window(size);
  if (start == 0) return false;
  g_window_cursor = start + size;
  base_ = start;
  size_ = size;
  maps_on_demand_ = true;
  next_.store(base_, std::memory_order_relaxed);
  return true;
}

bool AddressReservation::map_piece(uintptr_t start, size_t size) {
  const int saved_errno = errno;
  void* p =
      ::mmap(reinterpret_cast<void*>(start), size, PROT_READ | PROT_WRITE, kAnonymous | MAP_FIXED_NOREPLACE, -1, 0);
  if (p != MAP_FAILED && p != reinterpret_cast<void*>(start)) ::munmap(p, size);
  errno = saved_errno;
  return p == reinterpret_cast<void*>(start);
}

void* AddressReservation::take(size_t size, size_t alignment) {
  if (maps_on_demand_) {  // pieces of whole pages, so that no two share a page to map
    size = align_up(size, kPage);
    if (alignment < kPage) alignment = kPage;
  }
  uintptr_t current = next_.load(std::memory_order_relaxed);
  for (;;) {
    uintptr_t start = (current + alignment - 1) & ~(uintptr_t{alignment} - 1);
    if (start < current || start - base_ > size_ || size > size_ - (start - base_)) return nullptr;
    if (next_.compare_exchange_weak(current, start + size, std::memory_order_relaxed)) {
      if (!maps_on_demand_ || map_piece(start, size)) return reinterpret_cast<void*>(start);
      // Refused (the limit): hand the range back unless another piece was taken after it, in
      // which case it stays a hole of the window (unmapped, so it costs nothing).
      uintptr_t expected = start + size;
      next_.compare_exchange_strong(expected, current, std::memory_order_relaxed);
      return nullptr;
    }
  }
}

bool AddressReservation::take_at(void* address, size_t size) {
  uintptr_t start = reinterpret_cast<uintptr_t>(address);
  uintptr_t expected = start;
  if (maps_on_demand_) size = align_up(size, kPage);
  if (start - base_ > size_ || size > size_ - (start - base_)) return false;
  if (!next_.compare_exchange_strong(expected, start + size, std::memory_order_relaxed)) return false;
  if (!maps_on_demand_ || map_piece(start, size)) return true;
  expected = start + size;
  next_.compare_exchange_strong(expected, start, std::memory_order_relaxed);
  return false;
}

}  // namespace heapkeeper::alloc
