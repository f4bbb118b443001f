// The operating-system primitives the collector needs, behind one header (as mimalloc's prim.h).
//
// Preconditions, because most of these run while every other thread is stopped — and a stopped
// thread may hold any lock, including malloc's and the dynamic loader's:
//  - nothing here allocates from any heap or takes a lock that program threads take, except
//    for_each_loaded_module, which takes the dynamic loader's lock and must therefore be called
//    *before* the world is stopped (the collector runs the whole stop inside its callback, so no
//    thread can be stopped while holding that lock and no module can come or go during a scan);
//  - buffers are provided by the caller (mapped with map_internal before the stop);
//  - errno is preserved.
#pragma once

#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace heapkeeper::collect {

struct MemoryRange {
  uintptr_t start = 0, end = 0;
};

// Anonymous mappings from /proc/self/maps that can hold the program's pointers: private ones that
// are readable or writable ([heap], [stack], unnamed and [anon:...] regions, a private mapping of
// /dev/zero, those the program made read-only with mprotect after filling them, and write-only
// ones, which Marker::scan_root_range reads through /proc/self/mem), and shared anonymous ones
// (/dev/zero, [anon_shmem:...], System V segments). File-backed mappings are
// excluded (reading past a file's end faults); module data is reported by module_writable_segments
// instead. Returns the number found (possibly more than `capacity`; only `capacity` are stored).
// `scratch` receives the file text; `open_error`, when given, the errno of a failed open of the maps
// file (0 when it opened). `unreadable`, when given, receives the private anonymous mappings the
// process cannot read as they are (no 'r': PROT_NONE, or write-only) that lie inside
// [unreadable_low, unreadable_high), up to `unreadable_capacity`; `unreadable_count` all of them.
// PROT_NONE mappings outside that range are no roots: they are mostly reservations and guard
// pages, and reading one would populate its page tables.
struct UnreadableQuery {
  uintptr_t low = 0, high = 0;
  MemoryRange* out = nullptr;
  size_t capacity = 0;
  size_t count = 0;
};
// Mappings of files that may hold the program's pointers: a program keeps them there as it does in
// anonymous memory (the JVM's class-data archive, mapped private, holds the only pointers to blocks
// it mallocs, and is made read-only once patched; a table shared with other processes through a
// file or a memfd). Private ones that are readable and not executable (what the program wrote there
// are its copied-on-write pages: FileMapping::shared false), and shared ones that are readable and
// writable. Not device files (/dev, except /dev/shm), /proc or /sys: reading a device's memory may
// act on the device. Module data is among them (the caller leaves out what it scans as such).
// Shared ones that are executable too: one view of a JIT's code mapped twice from a memfd (its
// other view writable), whose immediates name blocks (Marker::scan_unaligned_root_range).
struct FileMapping {
  uintptr_t start = 0, end = 0;
  bool shared = false, writable = false, executable = false;
};
struct FileMappingQuery {
  FileMapping* out = nullptr;
  size_t capacity = 0;
  size_t count = 0;
};
// Anonymous mappings that are executable (a JIT's code), listed in `out` too, go to `code` as well.
struct CodeMappingQuery {
  MemoryRange* out = nullptr;
  size_t capacity = 0;
  size_t count = 0;
};
size_t read_anonymous_writable_mappings(MemoryRange* out, size_t capacity, char* scratch, size_t scratch_size,
                                        int* open_error = nullptr, UnreadableQuery* unreadable = nullptr,
                                        FileMappingQuery* files = nullptr, CodeMappingQuery* code = nullptr);

// Calls visit(start, end) for each run of pages of [start, end) (page-aligned, in a file mapping)
// that can hold what the program wrote: copied-on-write pages of a private mapping (anonymous, in
// /proc/thread-self/pagemap), present or swapped pages of a shared one. `pagemap_fd` is that file
// open, `buffer` of `buffer_entries` words the caller's. False when the pagemap cannot be read.
template <typename Visit>
bool for_each_written_page_run(int pagemap_fd, uint64_t* buffer, size_t buffer_entries, const FileMapping& mapping,
                               Visit&& visit);

// The writable PT_LOAD segments (data, bss, relro) of every loaded module except the one at
// `excluded_base` (heapkeeper itself). Must run inside the loader lock (see above).
size_t module_writable_segments(MemoryRange* out, size_t capacity, uintptr_t excluded_base);
// The writable segments of the one module loaded at `base` (heapkeeper's own, to exclude them).
size_t module_writable_segments_of(MemoryRange* out, size_t capacity, uintptr_t base);

// Calls visit(data) while holding the dynamic loader's lock (dl_iterate_phdr's callback).
void with_loader_lock(void (*visit)(void*), void* data);

// Sends `signal` to thread `tid` of this process; false if it no longer exists.
bool signal_thread(pid_t tid, int signal);
bool thread_exists(pid_t tid);
pid_t current_tid();

// Futex wait/wake on a 32-bit word; wait returns after a wake, a change or the timeout.
void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, long timeout_ms);
void futex_wake_all(std::atomic<uint32_t>* word);

uint64_t monotonic_ns();

// ---- for_each_written_page_run (declared above)
// pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst): present, swapped, and "file page
// or shared anonymous" (clear on a private mapping's copied-on-write page).
constexpr uint64_t kPagemapPresent = uint64_t{1} << 63, kPagemapSwapped = uint64_t{1} << 62,
                   kPagemapFilePage = uint64_t{1} << 61;

template <typename Visit>
bool for_each_written_page_run(int pagemap_fd, uint64_t* buffer, size_t buffer_entries, const FileMapping& mapping,
                               Visit&& visit) {
  constexpr uintptr_t kPage = 4096;
  uintptr_t run_start = 0;  // 0: no run open
  for (uintptr_t page = mapping.start; page < mapping.end;) {
    const size_t wanted = std::min<size_t>(buffer_entries, (mapping.end - page) / kPage);
    const ssize_t got = ::syscall(SYS_pread64, pagemap_fd, buffer, wanted * sizeof(uint64_t),
                                  static_cast<off_t>(page / kPage * sizeof(uint64_t)));
    if (got <= 0 || got % sizeof(uint64_t) != 0) return false;
    const size_t entries = static_cast<size_t>(got) / sizeof(uint64_t);
    for (size_t i = 0; i < entries; ++i, page += kPage) {
      const uint64_t entry = buffer[i];
      const bool there = (entry & (kPagemapPresent | kPagemapSwapped)) != 0;
      const bool written = there && (mapping.shared || (entry & kPagemapFilePage) == 0);
      if (written && run_start == 0) run_start = page;
      if (!written && run_start != 0) {
        visit(run_start, page);
        run_start = 0;
      }
    }
  }
  if (run_start != 0) visit(run_start, mapping.end);
  return true;
}

}  // namespace heapkeeper::collect
