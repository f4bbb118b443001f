// Creation of heapkeeper's jemalloc arenas and their extent hooks (see private_heap.h).
//
// The hooks never give address space back: dalloc opts out, so jemalloc retains every extent and
// recycles it, and memory goes back to the OS only through the purge hooks (madvise), which count
// what they return. Commit and decommit are no-ops because the reservation is mapped read-write
// from the start; declining decommit makes jemalloc purge instead.
#include "allocator/private_heap.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "allocator/jemalloc_calls.h"

// jemalloc reads its options from this symbol (renamed with the rest of the archive). A background
// thread is not wanted inside the traced program; decay is jemalloc's default, driven by activity.
// Thread caches start off: they are enabled per thread once arena 0 allocates from the internal
// reservation (see initialize), so no cache array ever lives where the collector looks for roots.
// Huge allocations stay in the thread's (tracked) arena instead of jemalloc's automatic huge arena.
extern "C" {
__attribute__((visibility("hidden"))) const char* hk_je_malloc_conf =
    "background_thread:false,tcache:false,oversize_threshold:0";
}

namespace heapkeeper::alloc {
namespace {

PrivateHeap g_heap;

struct ReservationHooks {
  extent_hooks_t hooks;  // first member: jemalloc hands back this pointer
  AddressReservation* range;
};

AddressReservation& range_of(extent_hooks_t* hooks) { return *reinterpret_cast<ReservationHooks*>(hooks)->range; }

void* extent_alloc(extent_hooks_t* hooks, void* new_addr, size_t size, size_t alignment, bool* zero, bool* commit,
                   unsigned /*arena_ind*/) {
  AddressReservation& range = range_of(hooks);
  void* result = nullptr;
  if (new_addr != nullptr) {
    if (reinterpret_cast<uintptr_t>(new_addr) % alignment == 0 && range.take_at(new_addr, size)) result = new_addr;
  } else {
    result = range.take(size, alignment < kPageSize ? kPageSize : alignment);
  }
  if (result != nullptr) {
    // Never-used address space of a fresh anonymous mapping reads as zero.
    *zero = true;
    *commit = true;
  }
  return result;
}

bool extent_dalloc(extent_hooks_t*, void*, size_t, bool, unsigned) { return true; }  // retain
void extent_destroy(extent_hooks_t*, void*, size_t, bool, unsigned) {}
bool extent_commit(extent_hooks_t*, void*, size_t, size_t, size_t, unsigned) { return false; }
bool extent_decommit(extent_hooks_t*, void*, size_t, size_t, size_t, unsigned) { return true; }

bool extent_purge(void* addr, size_t size, size_t offset, size_t length, int advice) {
  (void)size;
  char* start = static_cast<char*>(addr) + offset;
  if (::madvise(start, length, advice) != 0) return true;
  g_heap.note_returned(length);
  return false;
}
bool extent_purge_lazy(extent_hooks_t*, void* addr, size_t size, size_t offset, size_t length, unsigned) {
  return extent_purge(addr, size, offset, length, MADV_FREE);
}
bool extent_purge_forced(extent_hooks_t*, void* addr, size_t size, size_t offset, size_t length, unsigned) {
  return extent_purge(addr, size, offset, length, MADV_DONTNEED);
}
bool extent_split(extent_hooks_t*, void*, size_t, size_t, size_t, bool, unsigned) { return false; }
bool extent_merge(extent_hooks_t* hooks, void* a, size_t, void* b, size_t, bool, unsigned) {
  AddressReservation& range = range_of(hooks);
  return !(range.contains(a) && range.contains(b));
}

ReservationHooks g_tracked_hooks{{extent_alloc, extent_dalloc, extent_destroy, extent_commit, extent_decommit,
                                  extent_purge_lazy, extent_purge_forced, extent_split, extent_merge},
                                 nullptr};
ReservationHooks g_internal_hooks{{extent_alloc, extent_dalloc, extent_destroy, extent_commit, extent_decommit,
                                   extent_purge_lazy, extent_purge_forced, extent_split, extent_merge},
                                  nullptr};

bool create_arena(extent_hooks_t* hooks, unsigned& index) {
  size_t length = sizeof(index);
  // mallctl takes the address of the hooks pointer and that pointer's size.
  const size_t hooks_size = sizeof(extent_hooks_t*);
  return je::mallctl("arenas.create", &index, &length, &hooks, hooks_size) == 0;
}

template <typename T>
bool read_ctl(const char* name, T& value) {
  size_t length = sizeof(value);
  return je::mallctl(name, &value, &length, nullptr, 0) == 0;
}

uint64_t automatic_reserve() {
  // Four times physical memory, as a power of two, between 16 GiB and 4 TiB: generous enough that
  // a program never runs out of address space before it runs out of RAM, small enough that the
  // block map's own reservations stay modest.
  long pages = ::sysconf(_SC_PHYS_PAGES);
  uint64_t physical = pages > 0 ? static_cast<uint64_t>(pages) * kPageSize : (uint64_t{16} << 30);
  uint64_t reserve = uint64_t{16} << 30;
  while (reserve < physical * 4 && reserve < (uint64_t{4} << 40)) reserve <<= 1;
  return reserve;
}

// Under an address-space limit every byte an arena maps ahead of need is a byte the program cannot
// map itself: jemalloc grows its retained memory geometrically (2 MiB, 4 MiB, ... without bound),
// so each step is capped at 1/32 of what the process may still map (4 to 64 MiB). A step the
// kernel refuses makes jemalloc fall back to an extent of the exact size.
void limit_retained_growth(unsigned arena) {
  uint64_t step = address_space_left() / 32;
  if (step < (uint64_t{4} << 20)) step = uint64_t{4} << 20;
  if (step > (uint64_t{64} << 20)) step = uint64_t{64} << 20;
  size_t limit = static_cast<size_t>(step);
  char name[64];
  std::snprintf(name, sizeof(name), "arena.%u.retain_grow_limit", arena);
  je::mallctl(name, nullptr, nullptr, &limit, sizeof(limit));
}

}  // namespace

PrivateHeap& private_heap() { return g_heap; }

bool PrivateHeap::initialize(uint64_t reserve_bytes, unsigned arena_count) {
  if (reserve_bytes == 0) reserve_bytes = automatic_reserve();
  if (!tracked_.reserve(reserve_bytes, uint64_t{1} << 30)) return false;
  if (!internal_.reserve(uint64_t{16} << 30, uint64_t{256} << 20)) return false;
  g_tracked_hooks.range = &tracked_;
  g_internal_hooks.range = &internal_;

  if (arena_count == 0) {
    long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
    arena_count = cpus > 0 ? static_cast<unsigned>(cpus) : 1;
    if (arena_count > 8) arena_count = 8;
  }
  if (arena_count > 64) arena_count = 64;
  if (!create_arena(&g_internal_hooks.hooks, internal_arena_)) return false;
  // jemalloc allocates its per-thread caches from arena 0. Their bin arrays keep stale copies of
  // region addresses handed out moments ago, which the collector must never take for references:
  // so arena 0's extents come from the internal reservation too, which is never scanned as a root.
  extent_hooks_t* internal_hooks = &g_internal_hooks.hooks;
  const size_t hooks_size = sizeof(extent_hooks_t*);
  if (je::mallctl("arena.0.extent_hooks", nullptr, nullptr, &internal_hooks, hooks_size) != 0) return false;
  // jemalloc starts with thread caches off (hk_je_malloc_conf), so none was made before this
  // switch; each thread turns its cache on when it registers.
  for (unsigned i = 0; i < arena_count; ++i) {
    if (!create_arena(&g_tracked_hooks.hooks, tracked_arenas_[i])) return false;
  }
  arena_count_ = arena_count;
  if (tracked_.maps_on_demand()) {
    limit_retained_growth(0);
    limit_retained_growth(internal_arena_);
    for (unsigned i = 0; i < arena_count; ++i) limit_retained_growth(tracked_arenas_[i]);
  }

  unsigned bins = 0;
  if (!read_ctl("arenas.nbins", bins) || bins == 0 || bins > kMaxSmallClasses) return false;
  for (unsigned i = 0; i < bins; ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "arenas.bin.%u.size", i);
    size_t size = 0;
    if (!read_ctl(name, size)) return false;
    small_class_size_[i] = size;
  }
  small_class_count_ = bins;
  small_max_ = small_class_size_[bins - 1];
  if (small_max_ > 14336) return false;  // request_class_ is sized for jemalloc's 4 KiB-page layout
  unsigned cls = 0;
  for (size_t slot = 0; slot * 16 <= small_max_; ++slot) {
    size_t total = slot * 16;
    while (cls + 1 < bins && small_class_size_[cls] < total) ++cls;
    request_class_[slot] = static_cast<uint8_t>(cls);
  }
  return true;
}

int PrivateHeap::small_class_of_usable(size_t usable) const {
  unsigned lo = 0, hi = small_class_count_;
  while (lo < hi) {
    unsigned mid = (lo + hi) / 2;
    if (small_class_size_[mid] < usable)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < small_class_count_ && small_class_size_[lo] == usable ? static_cast<int>(lo) : -1;
}

HeapFigures PrivateHeap::figures() const {
  HeapFigures f;
  f.reserve_bytes = tracked_.size();
  f.mapped_bytes = tracked_.used();
  f.internal_mapped_bytes = internal_.used();
  f.returned_bytes = returned_bytes_.load(std::memory_order_relaxed);
  // Resident pages of the tracked range, counted by the kernel: exact, and off the hot path.
  uintptr_t start = tracked_.base();
  size_t length = (f.mapped_bytes + kPageSize - 1) & ~(kPageSize - 1);
  static constexpr size_t kChunkPages = 1 << 14;
  unsigned char vector[kChunkPages];
  for (size_t done = 0; done < length;) {
    size_t pages = (length - done) / kPageSize;
    if (pages > kChunkPages) pages = kChunkPages;
    if (::mincore(reinterpret_cast<void*>(start + done), pages * kPageSize, vector) != 0) break;
    for (size_t i = 0; i < pages; ++i) f.resident_bytes += (vector[i] & 1) ? kPageSize : 0;
    done += pages * kPageSize;
  }
  uint64_t epoch = 1;
  size_t epoch_length = sizeof(epoch);
  je::mallctl("epoch", &epoch, &epoch_length, &epoch, sizeof(epoch));
  for (unsigned i = 0; i < arena_count_; ++i) {
    char name[96];
    size_t small = 0, large = 0;
    std::snprintf(name, sizeof(name), "stats.arenas.%u.small.allocated", tracked_arenas_[i]);
    read_ctl(name, small);
    std::snprintf(name, sizeof(name), "stats.arenas.%u.large.allocated", tracked_arenas_[i]);
    read_ctl(name, large);
    f.active_bytes += small + large;
  }
  return f;
}

}  // namespace heapkeeper::alloc
