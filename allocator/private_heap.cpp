// Creation of heapkeeper's jemalloc arenas and their extent hooks (see private_heap.h).
//
// The hooks never give address space back: dalloc opts out, so jemalloc retains every extent and
// recycles it, and memory goes back to the OS only through the purge hooks (madvise), which count
// what they return. Commit and decommit are no-ops because the reservation is mapped read-write
// from the start; declining decommit makes jemalloc purge instead.
#include "allocator/private_heap.h"

#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "allocator/config.h"
#include "allocator/engine.h"
#include "allocator/heap_trimmer.h"
#include "allocator/jemalloc_calls.h"
#include "allocator/metadata_prefault.h"
#include "allocator/syscall_filter.h"

// jemalloc reads its options from this symbol (renamed with the rest of the archive) when it boots;
// a user's MALLOC_CONF is read after it and wins where it sets the same option.
//  - background_thread:false: no jemalloc thread inside the traced program.
//  - tcache:false: thread caches start off; they are enabled per thread once arena 0 allocates
//    from the internal reservation (see initialize), so no cache array ever lives where the
//    collector looks for roots.
//  - oversize_threshold:0: huge allocations stay in the thread's (tracked) arena instead of
//    jemalloc's automatic huge arena.
//  - narenas:1: one automatic arena. Every thread is bound to a tracked arena or names the internal
//    one, and each automatic arena jemalloc would make for a new thread costs 2 MiB of metadata.
//  - dirty_decay_ms:-1, muzzy_decay_ms:0: memory the program frees is never purged from inside
//    malloc and free; heapkeeper's trimmer thread gives it back (MADV_DONTNEED) once it has stayed
//    unused for a moment (heap_trimmer.h).
//  - lg_extent_max_active_fit:30: freed memory of one size serves any other. jemalloc's default (6)
//    never splits an unused extent more than 64 times larger than the request, so the memory of
//    freed 1 MiB blocks could not become 4 KiB blocks or small-class slabs, and the heap grew by
//    what each size class once held (issue #12: 2.16 GB peak RSS for 256 MiB live).
//  - slab_sizes: slabs of the whole-page classes (4, 8 and 12 KiB regions) span at least 16 KiB
//    (4, 2 and 4 regions) instead of jemalloc's one region. jemalloc coalesces a freed extent with
//    its free neighbours at once only from 16 KiB up; smaller ones wait until purged, and until then
//    serve no larger request, so freed 4 KiB blocks could not become the 20 KiB slabs of another
//    class. Under an address-space limit they hold more (8, 4 and 4): a one-region slab costs a
//    128-byte extent record per 4 KiB block (3% of the address space, allocated in 2, 4, 6 MiB
//    metadata blocks).
//  - trust_madvise:true: jemalloc's boot would otherwise map, purge and unmap a page to test whether
//    MADV_DONTNEED zeroes memory, which it does on every Linux kernel (the test is for emulators):
//    three system calls and a page fault of every traced process's start.
// (No cache-oblivious offset either, which is not a MALLOC_CONF option: see initialize.)
namespace {
#define HK_JEMALLOC_COMMON_OPTIONS                                                                          \
  "background_thread:false,tcache:false,oversize_threshold:0,narenas:1,dirty_decay_ms:-1,muzzy_decay_ms:0," \
  "lg_extent_max_active_fit:30,trust_madvise:true,"
constexpr const char* kJemallocOptions = HK_JEMALLOC_COMMON_OPTIONS "slab_sizes:4096-4096:4|8192-8192:4|12288-12288:12";
constexpr const char* kJemallocOptionsUnderALimit =
    HK_JEMALLOC_COMMON_OPTIONS "slab_sizes:4096-4096:8|8192-8192:8|12288-12288:12";
#undef HK_JEMALLOC_COMMON_OPTIONS
}  // namespace

extern "C" {
__attribute__((visibility("hidden"))) const char* hk_je_malloc_conf = kJemallocOptions;
// Read after MALLOC_CONF, so it holds whatever that says (the program's MALLOC_CONF may be meant for
// a jemalloc of its own). The private jemalloc never profiles (heapkeeper is the profiler; its
// profiling code is the only user of libm, which libheapkeeper.so therefore does not load, see
// preload/profiling_math.c; prof_leak and prof_leak_error turn profiling on by themselves), and
// never starts background threads (heapkeeper's internal arena has none, and jemalloc's failing
// to make one there left the process without a heap).
__attribute__((visibility("hidden"))) const char* hk_je_malloc_conf_2_conf_harder =
    "prof:false,prof_leak:false,prof_leak_error:false,background_thread:false";
}

namespace heapkeeper::alloc {
namespace {

// Picks jemalloc's options before it boots: from PrivateHeap::initialize, heapkeeper's first call
// into jemalloc, and from this constructor, which runs before jemalloc's own (a priority
// constructor of the same library), in case nothing allocated before the library's constructors.
__attribute__((constructor(101))) void choose_jemalloc_options() {
  if (address_space_left() != 0) hk_je_malloc_conf = kJemallocOptionsUnderALimit;
}

PrivateHeap g_heap;

struct ReservationHooks {
  extent_hooks_t hooks;  // first member: jemalloc hands back this pointer
  AddressReservation* range;
  bool tracked;  // the tracked reservation's, whose arenas' base blocks are pre-faulted
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
    if (reinterpret_cast<ReservationHooks*>(hooks)->tracked)
      prefault_if_announced(MetadataBlock::kTrackedArena, result, size);
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
                                 nullptr,
                                 true};
ReservationHooks g_internal_hooks{{extent_alloc, extent_dalloc, extent_destroy, extent_commit, extent_decommit,
                                   extent_purge_lazy, extent_purge_forced, extent_split, extent_merge},
                                  nullptr,
                                  false};

bool create_arena(extent_hooks_t* hooks, unsigned& index) {
  // The arena's first base block comes from `hooks` (metadata_use_hooks) and is written at once.
  // Pre-faulted with madvise, whose advice a program's seccomp filter may check: during start-up
  // (the engine not up yet: before the program could install a filter of its own), or where no
  // filter is known to be absent; elsewhere jemalloc's own calls only.
  PrefaultNextMetadataBlock prefault(MetadataBlock::kTrackedArena, !is_initialized() || syscall_filter_known_absent());
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

// Adds arena `arena`'s figures to `out` (the caller refreshed the stats epoch).
void add_arena_figures(unsigned arena, ArenaFigures& out) {
  auto stat = [arena](const char* field) {
    char name[96];
    std::snprintf(name, sizeof(name), "stats.arenas.%u.%s", arena, field);
    size_t value = 0;
    read_ctl(name, value);
    return static_cast<uint64_t>(value);
  };
  const uint64_t active = stat("pactive") * kPageSize, dirty = stat("pdirty") * kPageSize;
  const uint64_t muzzy = stat("pmuzzy") * kPageSize;
  out.allocated_bytes += stat("small.allocated") + stat("large.allocated");
  out.active_bytes += active;
  out.dirty_bytes += dirty;
  out.muzzy_bytes += muzzy;
  // jemalloc's "resident" is its base's resident pages plus every active, dirty and muzzy page.
  const uint64_t resident = stat("resident");
  out.metadata_bytes += resident > active + dirty + muzzy ? resident - active - dirty - muzzy : 0;
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
// kernel refuses makes jemalloc fall back to an extent of the exact size, so the program still
// gets the last bytes.
void limit_retained_growth(unsigned arena) {
  uint64_t step = address_space_left() / 32;
  if (step < (uint64_t{4} << 20)) step = uint64_t{4} << 20;
  if (step > (uint64_t{64} << 20)) step = uint64_t{64} << 20;
  size_t limit = static_cast<size_t>(step);
  char name[64];
  std::snprintf(name, sizeof(name), "arena.%u.retain_grow_limit", arena);
  je::mallctl(name, nullptr, nullptr, &limit, sizeof(limit));
}

// How many tracked arenas: one per CPU the process may run on, at most 8, unless set. Under an
// address-space limit each arena costs its metadata block (2 MiB, mapped when the arena is made)
// and what it retains, on every arena, from a budget the program needs: one arena per 256 MiB the
// process may still map. The CPUs from the affinity mask, one system call, where sysconf's online
// count opened and read /sys/devices/system/cpu/online in every traced process (issue #12); a
// process confined to fewer CPUs (taskset, a container's cpuset) needs no more arenas than those.
unsigned tracked_arena_count(unsigned configured) {
  if (configured != 0) return configured > 64 ? 64 : configured;
  cpu_set_t allowed;
  long cpus = ::sched_getaffinity(0, sizeof allowed, &allowed) == 0 ? CPU_COUNT(&allowed) : 0;
  if (cpus <= 0) cpus = ::sysconf(_SC_NPROCESSORS_ONLN);  // more CPUs than a cpu_set_t holds
  unsigned count = cpus > 0 ? static_cast<unsigned>(cpus) : 1;
  if (count > 8) count = 8;
  const uint64_t left = address_space_left();
  if (left != 0) {
    const uint64_t affordable = left / (uint64_t{256} << 20);
    if (affordable < count) count = affordable == 0 ? 1 : static_cast<unsigned>(affordable);
  }
  return count;
}

}  // namespace

PrivateHeap& private_heap() { return g_heap; }

bool PrivateHeap::initialize(uint64_t reserve_bytes, unsigned arena_count) {
  // No cache-oblivious padding: a large region starts its first page instead of a random cache line
  // into it. That saves a page per large block and lets its header live out of band
  // (block_header.h), so that a 1 MiB request takes 1 MiB. jemalloc's constructor may have booted
  // it already (with the padding of Debian's build), but nothing has allocated from it before this
  // first call from heapkeeper: no extent was padded yet, and the padding is read afresh at each
  // large allocation (its size tables do not depend on it).
  je_opt_cache_oblivious = false;
  je_sz_large_pad = 0;
  choose_jemalloc_options();
  if (reserve_bytes == 0) reserve_bytes = automatic_reserve();
  if (!tracked_.reserve(reserve_bytes, uint64_t{1} << 30)) return false;
  if (!internal_.reserve(uint64_t{16} << 30, uint64_t{256} << 20)) return false;
  g_tracked_hooks.range = &tracked_;
  g_internal_hooks.range = &internal_;

  arena_count = tracked_arena_count(arena_count);
  // The internal arena is arena 0, jemalloc's own, which also holds its per-thread caches. Their bin
  // arrays keep stale copies of region addresses handed out moments ago, which the collector must
  // never take for references: arena 0's extents come from the internal reservation, never scanned
  // as a root. jemalloc's boot made arena 0 without allocating from it, and starts with thread
  // caches off (hk_je_malloc_conf), so nothing it holds predates this switch; each thread turns its
  // cache on when it registers. (A separate arena would cost its own metadata block and first
  // extent, 4 MiB that count under an address-space limit.)
  extent_hooks_t* internal_hooks = &g_internal_hooks.hooks;
  const size_t hooks_size = sizeof(extent_hooks_t*);
  {
    // heapkeeper's first call into jemalloc: its boot maps b0 and fills it, and this mallctl adds
    // its statistics there.
    PrefaultNextMetadataBlock prefault(MetadataBlock::kBoot, true);
    if (je::mallctl("arena.0.extent_hooks", nullptr, nullptr, &internal_hooks, hooks_size) != 0) return false;
  }
  internal_arena_ = 0;
  // Collect mode keeps jemalloc's own decay (see heap_trimmer.h), unless the user chose one or
  // turned giving memory back off (HEAPKEEPER_TRIM=off: dirty_decay_ms stays -1).
  if (config().mode == CollectorMode::kCollect && !user_sets_decay() && config().trim != TrimPolicy::kOff) {
    ssize_t decay_ms = 10000;
    je::mallctl("arenas.dirty_decay_ms", nullptr, nullptr, &decay_ms, sizeof(decay_ms));
    je::mallctl("arena.0.dirty_decay_ms", nullptr, nullptr, &decay_ms, sizeof(decay_ms));
  }
  for (auto& slot : tracked_arenas_) slot.store(kNoArena, std::memory_order_relaxed);
  arena_count_ = arena_count;
  if (tracked_.maps_on_demand()) limit_retained_growth(internal_arena_);
  // The first tracked arena now: the main thread's, and the one start-up must be able to make.
  if (make_tracked_arena(0) >= kArenaPending) return false;

  unsigned bins = 0;
  if (!read_ctl("arenas.nbins", bins) || bins == 0 || bins > kMaxSmallClasses) return false;
  // By MIB: one name lookup rather than one per class, and no snprintf at every process's start.
  size_t bin_size_mib[4];
  size_t bin_size_mib_length = 4;
  if (je::mallctlnametomib("arenas.bin.0.size", bin_size_mib, &bin_size_mib_length) != 0) return false;
  for (unsigned i = 0; i < bins; ++i) {
    bin_size_mib[2] = i;
    size_t size = 0;
    size_t length = sizeof(size);
    if (je::mallctlbymib(bin_size_mib, bin_size_mib_length, &size, &length, nullptr, 0) != 0) return false;
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
  for (unsigned i = 0; i < bins; ++i) {
    if (small_class_size_[i] % kPageSize == 0) whole_page_classes_ |= uint64_t{1} << i;
  }
  // Out-of-band headers need every whole-page region to start a page: true of the slab classes
  // (slabs are page-aligned), and of large regions without the cache-oblivious padding.
  bool cache_oblivious = true;
  out_of_band_headers_ = read_ctl("opt.cache_oblivious", cache_oblivious) && !cache_oblivious && je_sz_large_pad == 0;
  fill_plain_placements();
  return true;
}

void PrivateHeap::fill_plain_placements() {
  // Slot s holds the sizes (16 (s - 1), 16 s] (slot 0: size 0), which share both their own class
  // and the class of size + 16: jemalloc's small classes are multiples of 16.
  for (size_t slot = 0; slot * 16 <= small_max_; ++slot) {
    const unsigned own = request_class_[slot];
    const size_t in_band_total = slot * 16 + kHeaderSize + (slot == 0 ? 1 : 0);
    const bool in_band_large = in_band_total > small_max_;
    const unsigned with_header = in_band_large ? 0 : request_class_[(in_band_total + 15) >> 4];
    PlainPlacement& p = plain_placement_[slot];
    if (out_of_band_headers_ && slot > 0 && whole_page_class(own)) {
      p = {static_cast<uint8_t>(own), false, false, 0};
    } else if (out_of_band_headers_ && (in_band_large || whole_page_class(with_header))) {
      p = {in_band_large ? kLargeClass : static_cast<uint8_t>(with_header), false, true, 0};
    } else {
      p = {in_band_large ? kLargeClass : static_cast<uint8_t>(with_header), true, true, 0};
    }
  }
}

BlockPlacement PrivateHeap::place_aligned(size_t size, size_t alignment) const {
  const auto shift = static_cast<unsigned>(__builtin_ctzll(alignment));
  const int flags = MALLOCX_LG_ALIGN(shift);
  const size_t in_band_total = size + alignment + (size == 0 ? 1 : 0);
  if (out_of_band_headers_) {
    // jemalloc's region for the request (aligned as asked) is whole pages: no header in front.
    const size_t bytes = size == 0 ? 1 : size;
    const size_t usable = je::nallocx(bytes, flags);
    if (usable != 0 && usable % kPageSize == 0) return {bytes, 0, -1};
    // With the header in front it would be whole pages: the same region, header out of band.
    const size_t with_header = je::nallocx(in_band_total, flags);
    if (with_header != 0 && with_header % kPageSize == 0) return {in_band_total, 0, -1};
  }
  return {in_band_total, shift, -1};
}

unsigned PrivateHeap::make_tracked_arena(unsigned slot) const {
  unsigned expected = kNoArena;
  if (tracked_arenas_[slot].compare_exchange_strong(expected, kArenaPending, std::memory_order_acq_rel)) {
    unsigned arena = 0;
    if (!create_arena(&g_tracked_hooks.hooks, arena)) {
      // jemalloc could not make it (no memory for its metadata): the thread shares the first
      // arena, which exists from start-up; a later thread may try again.
      tracked_arenas_[slot].store(kNoArena, std::memory_order_release);
      return slot == 0 ? kNoArena : tracked_arena_for(1);
    }
    if (tracked_.maps_on_demand()) limit_retained_growth(arena);
    tracked_arenas_[slot].store(arena, std::memory_order_release);
    return arena;
  }
  // Another thread is making it: a moment's wait, once per thread.
  while ((expected = tracked_arenas_[slot].load(std::memory_order_acquire)) == kArenaPending) sched_yield();
  return expected < kArenaPending ? expected : (slot == 0 ? kNoArena : tracked_arena_for(1));
}

void PrivateHeap::after_fork_in_child() {
  for (auto& slot : tracked_arenas_) {
    unsigned pending = kArenaPending;
    slot.compare_exchange_strong(pending, kNoArena, std::memory_order_relaxed);
  }
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

HeapFigures PrivateHeap::figures(bool arena_statistics) const {
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
  if (!arena_statistics) return f;
  uint64_t epoch = 1;
  size_t epoch_length = sizeof(epoch);
  je::mallctl("epoch", &epoch, &epoch_length, &epoch, sizeof(epoch));
  for (unsigned i = 0; i < arena_count_; ++i) {
    const unsigned arena = tracked_arenas_[i].load(std::memory_order_acquire);
    if (arena >= kArenaPending) continue;
    add_arena_figures(arena, f.tracked);
  }
  f.active_bytes = f.tracked.allocated_bytes;
  add_arena_figures(internal_arena_, f.internal);
  return f;
}

}  // namespace heapkeeper::alloc
