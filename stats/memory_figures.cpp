// Implementation of the producer's half of the RSS breakdown (see memory_figures.h).
#include "stats/memory_figures.h"

#include <link.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "allocator/heap_trimmer.h"
#include "allocator/internal_mappings.h"
#include "allocator/jemalloc_api.h"
#include "allocator/thread_registry.h"

extern "C" const ElfW(Ehdr) __ehdr_start;  // defined by the linker at this object's first byte

namespace heapkeeper::stats {

// The segment's TrimPolicy is the allocator's FreedMemoryPolicy, value for value.
static_assert(static_cast<uint32_t>(TrimPolicy::kTrimmer) ==
                  static_cast<uint32_t>(alloc::FreedMemoryPolicy::kTrimmer) &&
              static_cast<uint32_t>(TrimPolicy::kCollectDecay) ==
                  static_cast<uint32_t>(alloc::FreedMemoryPolicy::kCollectDecay) &&
              static_cast<uint32_t>(TrimPolicy::kUsersDecay) ==
                  static_cast<uint32_t>(alloc::FreedMemoryPolicy::kUsersDecay) &&
              static_cast<uint32_t>(TrimPolicy::kOff) == static_cast<uint32_t>(alloc::FreedMemoryPolicy::kOff));

namespace {

constexpr uintptr_t kPage = alloc::kPageSize;

uint64_t overlap(uintptr_t low, uintptr_t high, uintptr_t from, uintptr_t to) {
  const uintptr_t start = std::max(low, from), end = std::min(high, to);
  return end > start ? end - start : 0;
}

ArenaFigures arena_figures(const alloc::ArenaFigures& from) {
  return {from.allocated_bytes, from.active_bytes, from.dirty_bytes, from.muzzy_bytes, from.metadata_bytes};
}

// libheapkeeper.so's loaded image, from its lowest PT_LOAD segment to the end of its highest (the
// bss, where the bootstrap pool and jemalloc's radix root live, included). Found once: the
// library is never unloaded.
//
// Read from the library's own program headers (the ELF header the linker puts at __ehdr_start),
// not with dl_iterate_phdr: that holds the dynamic loader's lock, and this runs on the publisher
// thread, which the program's fork() does not wait for. A child forked while the publisher held
// that lock inherited it held by a thread it does not have, and hung at its first
// dl_iterate_phdr (libunwind's, on its first allocation): a forked child of a traced bash loop,
// once in about 2,000 forks, its main thread and its own publisher both waiting for the lock.
struct Image {
  uintptr_t start = 0, end = 0;
};

const Image& own_image() {
  static Image image;
  static bool found = false;
  if (!found) {
    const auto* base = reinterpret_cast<const char*>(&__ehdr_start);
    const auto* segments = reinterpret_cast<const ElfW(Phdr)*>(base + __ehdr_start.e_phoff);
    // The load bias: where the segment that maps the file's first byte (and so the ELF header) lies.
    uintptr_t bias = reinterpret_cast<uintptr_t>(base);
    for (int i = 0; i < __ehdr_start.e_phnum; ++i) {
      if (segments[i].p_type == PT_LOAD && segments[i].p_offset == 0) {
        bias -= segments[i].p_vaddr;
        break;
      }
    }
    uintptr_t low = UINTPTR_MAX, high = 0;
    for (int i = 0; i < __ehdr_start.e_phnum; ++i) {
      const ElfW(Phdr)& segment = segments[i];
      if (segment.p_type != PT_LOAD) continue;
      const uintptr_t start = bias + segment.p_vaddr, end = start + segment.p_memsz;
      low = std::min(low, start & ~(kPage - 1));
      high = std::max(high, (end + kPage - 1) & ~(kPage - 1));
    }
    if (high > low) image = {low, high};
    found = true;
  }
  return image;
}

void add_range(MemoryFigures& out, uintptr_t start, uintptr_t end, RangeKind kind) {
  if (start >= end || out.range_count >= kMaxRanges) return;
  out.ranges[out.range_count++] = {start, end, static_cast<uint32_t>(kind), 0};
}

}  // namespace

LiveResidency::LiveResidency(uintptr_t heap_base, uint64_t heap_used)
    : base_(heap_base), end_(heap_base + ((heap_used + kPage - 1) & ~(kPage - 1))) {}

bool LiveResidency::resident(uintptr_t page) {
  if (page < window_start_ || page >= window_end_) {
    if (page < base_ || page >= end_) return false;
    const size_t pages = std::min<size_t>(kWindowPages, (end_ - page) / kPage);
    window_start_ = page;
    window_end_ = page + pages * kPage;
    // Handed-out pieces of the reservation are always mapped; should the kernel refuse anyway,
    // the window counts as not resident rather than as a guess.
    if (::mincore(reinterpret_cast<void*>(page), pages * kPage, pages_) != 0) std::memset(pages_, 0, pages);
  }
  return (pages_[(page - window_start_) / kPage] & 1) != 0;
}

void LiveResidency::add(uintptr_t region, size_t region_size, size_t user_offset, size_t requested,
                        bool header_in_band) {
  if (region_size == 0 || region < base_ || region >= end_) return;
  region_size = std::min<size_t>(region_size, end_ - region);
  if (user_offset >= region_size) user_offset = header_in_band ? 16 : 0;
  if (user_offset > region_size) user_offset = 0;
  requested = std::min(requested, region_size - user_offset);
  const uintptr_t user = region + user_offset, user_end = user + requested, region_end = region + region_size;
  const uintptr_t header = header_in_band && user_offset >= 16 ? user - 16 : user;
  ++blocks_;
  regions_ += region_size;
  const uint64_t in_header = header_in_band && user_offset >= 16 ? 16 : 0;
  if (((region ^ (region_end - 1)) & ~(kPage - 1)) == 0) {  // most blocks: one page
    if (resident(region & ~(kPage - 1))) {
      live_resident_ += requested;
      headers_ += in_header;
      slack_ += region_size - requested - in_header;
    } else {
      live_untouched_ += requested;
    }
    return;
  }
  for (uintptr_t page = region & ~(kPage - 1); page < region_end; page += kPage) {
    const uintptr_t low = std::max(page, region), high = std::min(page + kPage, region_end);
    const uint64_t live = overlap(low, high, user, user_end), header_part = overlap(low, high, header, user);
    if (resident(page)) {
      live_resident_ += live;
      headers_ += header_part;
      slack_ += (high - low) - live - header_part;
    } else {
      live_untouched_ += live;
    }
  }
}

void LiveResidency::finish(MemoryFigures& out) const {
  out.live_resident_bytes = live_resident_;
  out.live_untouched_bytes = live_untouched_;
  out.header_bytes = headers_;
  out.slack_bytes = slack_;
  out.live_region_bytes = regions_;
  out.walked_blocks = blocks_;
  out.walked = 1;
}

void fill_memory_figures(MemoryFigures& out, const alloc::HeapFigures& heap) {
  out.tracked = arena_figures(heap.tracked);
  out.internal = arena_figures(heap.internal);
  const alloc::FreedMemoryPolicyInfo policy = alloc::freed_memory_policy();
  out.trim_policy = static_cast<uint32_t>(policy.policy);
  out.trim_interval_ms = policy.interval_ms;
  out.trim_kept_per_arena_bytes = policy.kept_per_arena_bytes;

  out.range_count = 0;
  const alloc::PrivateHeap& private_heap = alloc::private_heap();
  // The reservations as far as they were handed out: the rest was never touched, and a reader
  // that has to ask which pages are present (rss_breakdown.h) asks about less.
  const auto used_end = [](const alloc::AddressReservation& r) {
    return r.base() + ((r.used() + kPage - 1) & ~(kPage - 1));
  };
  add_range(out, private_heap.tracked().base(), used_end(private_heap.tracked()), RangeKind::kTrackedHeap);
  add_range(out, private_heap.internal().base(), used_end(private_heap.internal()), RangeKind::kInternalHeap);
  const Image& image = own_image();
  add_range(out, image.start, image.end, RangeKind::kHeapkeeperImage);
  // jemalloc's base blocks are aligned to 2 MiB, and its first is at least that large.
  if (void* boot = je_b0get(); boot != nullptr && !private_heap.internal().contains(boot)) {
    const auto start = reinterpret_cast<uintptr_t>(boot) & ~((uintptr_t{2} << 20) - 1);
    add_range(out, start, start + (uintptr_t{2} << 20), RangeKind::kJemallocBoot);
  }
  alloc::MappedRange tables[256];
  const size_t table_count = std::min(alloc::internal_mappings(tables, std::size(tables)), std::size(tables));
  for (size_t i = 0; i < table_count; ++i) add_range(out, tables[i].start, tables[i].end, RangeKind::kHeapkeeperTable);
  // heapkeeper's threads first: the table may not hold every stack of a program with many threads.
  alloc::thread_registry().for_each_active([&](alloc::ThreadState& s) {
    if (s.heapkeeper_thread) add_range(out, s.stack_low, s.stack_high, RangeKind::kHeapkeeperStack);
  });
  alloc::thread_registry().for_each_active([&](alloc::ThreadState& s) {
    if (!s.heapkeeper_thread) add_range(out, s.stack_low, s.stack_high, RangeKind::kProgramStack);
  });
}

}  // namespace heapkeeper::stats
