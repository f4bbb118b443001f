// Implementation of a scan (see root_scan.h). Everything between stop and resume avoids the heap:
// range lists and the /proc/self/maps text live in buffers mapped for the scan.
#include "collector/root_scan.h"

#include "collector/reference_graph.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "allocator/bootstrap_pool.h"
#include "allocator/internal_mappings.h"
#include "allocator/private_heap.h"
#include "allocator/signal_safe_pool.h"
#include "allocator/thread_registry.h"
#include "collector/exited_stack_exclusion.h"
#include "collector/kernel_roots.h"
#include "collector/memory_sharing_tasks.h"
#include "collector/os_primitives.h"
#include "collector/own_tls.h"
#include "collector/protection_keys.h"
#include "collector/world_stop.h"

namespace heapkeeper::collect {
namespace {

constexpr size_t kMaxRanges = 65536;         // vm.max_map_count is 65530 by default
constexpr size_t kMapsTextBytes = 16 << 20;  // about 100 bytes a line, and long paths
constexpr size_t kPagemapEntries = 8192;     // 32 MiB of address space a read
// Twice the most threads one listing of a stop can hold (ptrace_stop.cpp's 8192), for threads that
// came and went between listings: 36 MiB of address space at 2.2 KiB a slot, touched only for the
// threads there are.
constexpr size_t kMaxThreads = 16384;

// A registered thread's own stack, as pthread_getattr_np gave it (thread_registry.h).
struct ThreadStack {
  pid_t tid;
  uintptr_t low, high;
};

struct ScanBuffers {
  MemoryRange* anonymous = nullptr;
  MemoryRange* modules = nullptr;
  MemoryRange* excluded = nullptr;
  MemoryRange* unreadable = nullptr;  // heap ranges the program made unreadable
  FileMapping* files = nullptr;       // mappings of files (os_primitives.h)
  MemoryRange* code = nullptr;        // anonymous executable mappings (a JIT's code)
  uint64_t* pagemap = nullptr;        // entries of /proc/thread-self/pagemap, read for them
  char* maps_text = nullptr;
  StoppedThread* threads = nullptr;
  ThreadStack* thread_stacks = nullptr;
  size_t bytes_thread_stacks = kMaxThreads * sizeof(ThreadStack);
  size_t bytes_anonymous = kMaxRanges * sizeof(MemoryRange), bytes_modules = kMaxRanges * sizeof(MemoryRange),
         bytes_excluded = kMaxRanges * sizeof(MemoryRange), bytes_unreadable = kMaxRanges * sizeof(MemoryRange),
         bytes_files = kMaxRanges * sizeof(FileMapping), bytes_code = kMaxRanges * sizeof(MemoryRange),
         bytes_pagemap = kPagemapEntries * sizeof(uint64_t), bytes_text = kMapsTextBytes,
         bytes_threads = kMaxThreads * sizeof(StoppedThread);

  bool map() {
    anonymous = static_cast<MemoryRange*>(alloc::map_internal(bytes_anonymous, true));
    modules = static_cast<MemoryRange*>(alloc::map_internal(bytes_modules, true));
    excluded = static_cast<MemoryRange*>(alloc::map_internal(bytes_excluded, true));
    unreadable = static_cast<MemoryRange*>(alloc::map_internal(bytes_unreadable, true));
    files = static_cast<FileMapping*>(alloc::map_internal(bytes_files, true));
    code = static_cast<MemoryRange*>(alloc::map_internal(bytes_code, true));
    pagemap = static_cast<uint64_t*>(alloc::map_internal(bytes_pagemap, true));
    maps_text = static_cast<char*>(alloc::map_internal(bytes_text, true));
    threads = static_cast<StoppedThread*>(alloc::map_internal(bytes_threads, true));
    thread_stacks = static_cast<ThreadStack*>(alloc::map_internal(bytes_thread_stacks, true));
    return anonymous && modules && excluded && unreadable && files && code && pagemap && maps_text && threads &&
           thread_stacks;
  }
  ~ScanBuffers() {
    if (anonymous) alloc::unmap_internal(anonymous, bytes_anonymous);
    if (modules) alloc::unmap_internal(modules, bytes_modules);
    if (excluded) alloc::unmap_internal(excluded, bytes_excluded);
    if (unreadable) alloc::unmap_internal(unreadable, bytes_unreadable);
    if (files) alloc::unmap_internal(files, bytes_files);
    if (code) alloc::unmap_internal(code, bytes_code);
    if (pagemap) alloc::unmap_internal(pagemap, bytes_pagemap);
    if (maps_text) alloc::unmap_internal(maps_text, bytes_text);
    if (threads) alloc::unmap_internal(threads, bytes_threads);
    if (thread_stacks) alloc::unmap_internal(thread_stacks, bytes_thread_stacks);
  }
};

struct ScanJob {
  uintptr_t own_base;  // heapkeeper's module (dladdr takes the loader's lock: looked up before the stop)
  const ScanRequest* request;
  Marker* marker;
  ScanBuffers* buffers;
  ScanResult* result;
};

uintptr_t own_module_base() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&scan_heap), &info) == 0) return 0;
  return reinterpret_cast<uintptr_t>(info.dli_fbase);
}

// Calls scan(from, to) for the pieces of [start, end) outside the (sorted) excluded ranges.
template <typename Scan>
void for_each_piece_outside(uintptr_t start, uintptr_t end, const MemoryRange* excluded, size_t excluded_count,
                            Scan&& scan) {
  uintptr_t cursor = start;
  for (size_t i = 0; i < excluded_count && cursor < end; ++i) {
    const MemoryRange& x = excluded[i];
    if (x.end <= cursor) continue;
    if (x.start >= end) break;
    if (x.start > cursor) scan(cursor, x.start);
    if (x.end > cursor) cursor = x.end;
  }
  if (cursor < end) scan(cursor, end);
}

// Scans [start, end) minus the (sorted, non-overlapping enough) excluded ranges.
void scan_minus(Marker& marker, uintptr_t start, uintptr_t end, const MemoryRange* excluded, size_t excluded_count,
                uint64_t& pieces) {
  for_each_piece_outside(start, end, excluded, excluded_count, [&](uintptr_t from, uintptr_t to) {
    marker.scan_root_range(from, to);
    ++pieces;
  });
}

// The pages of file mappings the program wrote (os_primitives.h), minus the excluded ranges (module
// data, scanned as such; heapkeeper's live-stats segment, which names blocks): a block named only
// there was reported leaked, and collect mode freed it under the program (the JVM crashed in every
// collect run: its class-data archive, mapped private, holds the only pointers to blocks it
// mallocs). Only the pages the program wrote, found in /proc/thread-self/pagemap: reading the rest
// would read in whole files (a database mapped in full, the locale archive) at every scan. Without
// the pagemap, the writable mappings are read whole.
void scan_file_mappings(Marker& marker, const ScanBuffers& b, size_t file_count, const MemoryRange* excluded,
                        size_t excluded_count, uint64_t& pieces) {
  if (file_count == 0) return;
  const int pagemap_fd =
      static_cast<int>(::syscall(SYS_openat, AT_FDCWD, "/proc/thread-self/pagemap", O_RDONLY | O_CLOEXEC));
  bool executable = false;
  const auto scan = [&](uintptr_t start, uintptr_t end) {
    for_each_piece_outside(start, end, excluded, excluded_count, [&](uintptr_t from, uintptr_t to) {
      if (marker.scan_fallible_root_range(from, to)) ++pieces;
      if (executable) marker.scan_unaligned_root_range(from, to, true);
    });
  };
  for (size_t i = 0; i < file_count; ++i) {
    const FileMapping& file = b.files[i];
    executable = file.executable;
    if (pagemap_fd >= 0 && for_each_written_page_run(pagemap_fd, b.pagemap, kPagemapEntries, file, scan)) continue;
    if (file.writable) scan(file.start, file.end);
  }
  if (pagemap_fd >= 0) ::syscall(SYS_close, pagemap_fd);
}

const MemoryRange* range_containing(const MemoryRange* ranges, size_t count, uintptr_t address) {
  for (size_t i = 0; i < count; ++i) {
    if (address >= ranges[i].start && address < ranges[i].end) return &ranges[i];
  }
  return nullptr;
}

// What each root range is, for naming the roots of retainer paths (reference_graph.h). Stacks are
// the anonymous mappings holding a stopped thread's stack pointer; ranges recorded first win.
void record_root_ranges(ReferenceGraph& graph, const ScanRequest& request, const ScanBuffers& b, size_t module_count,
                        size_t anonymous_count, size_t file_count, size_t thread_count) {
  if (request.caller_stack_pointer != 0) {  // the exit scan's own (program) thread
    const auto self = static_cast<int32_t>(gettid());
    const auto registers = reinterpret_cast<uintptr_t>(request.caller_registers);
    if (registers != 0)
      graph.add_root_range(
          {registers, registers + request.caller_register_count * sizeof(uint64_t), RootKind::kRegisters, self, 0});
    if (const MemoryRange* stack = range_containing(b.anonymous, anonymous_count, request.caller_stack_pointer))
      graph.add_root_range({stack->start, stack->end, RootKind::kStack, self, request.caller_stack_pointer});
  }
  for (size_t i = 0; i < thread_count; ++i) {
    const StoppedThread& t = b.threads[i];
    if (t.tid <= 0) continue;
    const auto registers = reinterpret_cast<uintptr_t>(t.registers);
    graph.add_root_range({registers, registers + t.register_count * sizeof(uint64_t), RootKind::kRegisters, t.tid, 0});
    if (const MemoryRange* stack = range_containing(b.anonymous, anonymous_count, t.stack_pointer))
      graph.add_root_range({stack->start, stack->end, RootKind::kStack, t.tid, t.stack_pointer});
  }
  for (size_t i = 0; i < module_count; ++i)
    graph.add_root_range({b.modules[i].start, b.modules[i].end, RootKind::kModuleData, 0, 0});
  for_each_kernel_root_range([&](uintptr_t start, uintptr_t end) {
    graph.add_root_range({start, end, RootKind::kKernel, 0, 0});
  });
  const alloc::BootstrapPool& pool = alloc::bootstrap_pool();
  const auto pool_start = reinterpret_cast<uintptr_t>(&pool);
  graph.add_root_range({pool_start, pool_start + pool.used(), RootKind::kBootstrap, 0, 0});
  for (size_t i = 0; i < anonymous_count; ++i)
    graph.add_root_range({b.anonymous[i].start, b.anonymous[i].end, RootKind::kAnonymous, 0, 0});
  for (size_t i = 0; i < file_count; ++i)  // named as mappings (the word's range), like anonymous ones
    graph.add_root_range({b.files[i].start, b.files[i].end, RootKind::kAnonymous, 0, 0});
}

// Where a heapkeeper thread's frames and static TLS end in its stack [low, high): at its thread
// pointer. Above it lies glibc's thread control block, whose DTV (possibly a tracked block, when
// glibc reuses a cached stack) must stay reachable: in a forked child, the scanner thread took the
// stack of a program thread of the parent, and its DTV was reported leaked at every scan (and
// collect mode would have freed it under the thread). Below it, nothing is a root: the thread's
// frames hold the blocks it is looking at, and its static TLS only heapkeeper's own state (its
// allocations come from the internal arena). The frames once ended at the thread pointer less
// glibc's whole static TLS size and a page of margin, which left the scanner thread's outermost
// frames as roots: after a periodic scan they still held the addresses of blocks it had reported,
// and the exit scan found one of stale_stack_leaker's 40 leaks reachable (about one run in 10 with
// 5 ms scans, once in a CI run with 100 ms scans under load). The whole stack when the thread
// pointer is not inside it.
uintptr_t frames_and_tls_end(uintptr_t low, uintptr_t high, uintptr_t thread_pointer) {
  if (thread_pointer <= low || thread_pointer >= high) return high;
  return thread_pointer;
}

void scan_with_world_stopped(void* raw) {
  auto* job = static_cast<ScanJob*>(raw);
  ScanResult& result = *job->result;
  ScanBuffers& b = *job->buffers;
  Marker& marker = *job->marker;
  const uint64_t stop_started = monotonic_ns();

  // heapkeeper's own threads keep running: they never touch the program's memory during a scan.
  pid_t own_threads[64];
  size_t own_thread_count = 0;
  alloc::thread_registry().for_each_active([&](alloc::ThreadState& s) {
    if (s.heapkeeper_thread && s.tid != 0 && own_thread_count < 64) own_threads[own_thread_count++] = s.tid;
  });
  // A child sharing this memory without being a thread of it cannot be stopped or read: no
  // verdict while one runs (memory_sharing_tasks.h).
  if (const pid_t sharing = memory_sharing_task(); sharing != 0) {
    std::snprintf(result.failure, sizeof(result.failure),
                  "process %d shares this process's memory (clone with CLONE_VM) and cannot be stopped or read",
                  static_cast<int>(sharing));
    return;
  }
  size_t thread_count = 0;
  WorldStop world;
  const bool stopped = world.stop(b.threads, kMaxThreads, own_threads, own_thread_count, thread_count, result.failure,
                                  sizeof(result.failure));
  std::snprintf(result.stop_method, sizeof(result.stop_method), "%s", stop_method_name(world.method()));
  result.stop_timed_out = !stopped && world.timed_out();
  if (!stopped) return;
  for (size_t i = 0; i < thread_count; ++i) result.threads_stopped += b.threads[i].tid > 0 ? 1 : 0;

  int open_error = 0;
  const alloc::PrivateHeap& heap = alloc::private_heap();
  UnreadableQuery unreadable{heap.tracked().base(), heap.tracked().end(), b.unreadable, kMaxRanges, 0};
  FileMappingQuery files{b.files, kMaxRanges, 0};
  CodeMappingQuery code{b.code, kMaxRanges, 0};
  const size_t anonymous_total = read_anonymous_writable_mappings(b.anonymous, kMaxRanges, b.maps_text, b.bytes_text,
                                                                  &open_error, &unreadable, &files, &code);
  const size_t file_count = std::min(files.count, kMaxRanges), code_count = std::min(code.count, kMaxRanges);
  if (anonymous_total == 0) {
    // Every process has anonymous writable mappings (its stacks, at least): none means the maps
    // file could not be read (no /proc in a sandbox or chroot, or a program that holds every
    // descriptor its limit allows). Without the stacks and the heaps of other allocators as
    // roots, every block would look leaked, and collect mode would free blocks in use.
    const char* why =
        open_error == EMFILE || open_error == ENFILE ? ": the program holds every descriptor its RLIMIT_NOFILE allows"
        : open_error == E2BIG ? " whole: it is longer than a scan's 16 MiB buffer (too many mappings, or long paths)"
                              : " (is /proc mounted?)";
    std::snprintf(result.failure, sizeof(result.failure),
                  "/proc/thread-self/maps cannot be read%s, so the roots are unknown", why);
    world.resume();
    return;
  }
  if (anonymous_total > kMaxRanges || files.count > kMaxRanges || code.count > kMaxRanges) {
    // Those past the buffers would be no roots: no verdict rather than blocks freed in use.
    std::snprintf(result.failure, sizeof(result.failure),
                  "the program has more than %zu mappings of one kind (%zu anonymous, %zu of files), more than a scan "
                  "can follow",
                  kMaxRanges, anonymous_total, files.count);
    world.resume();
    return;
  }
  const size_t anonymous_count = anonymous_total;
  const uintptr_t own_base = job->own_base;
  const size_t module_count = std::min(module_writable_segments(b.modules, kMaxRanges, own_base), kMaxRanges);
  MemoryRange own_segments[16];
  const size_t own_count = std::min(module_writable_segments_of(own_segments, 16, own_base), size_t{16});

  if (unreadable.count > kMaxRanges) {
    std::snprintf(result.failure, sizeof(result.failure),
                  "the program made %zu ranges of the heap unreadable (mprotect), more than a scan can follow",
                  unreadable.count);
    world.resume();
    return;
  }
  for (size_t i = 0; i < unreadable.count; ++i) {  // maps lists them in address order
    b.unreadable[i].start = std::max(b.unreadable[i].start, heap.tracked().base());
    b.unreadable[i].end = std::min(b.unreadable[i].end, heap.tracked().end());
  }

  // What is never a root.
  size_t excluded = 0;
  auto exclude = [&](uintptr_t start, uintptr_t end) {
    if (end > start && excluded < kMaxRanges) b.excluded[excluded++] = {start, end};
  };
  exclude(heap.tracked().base(), heap.tracked().end());
  exclude(heap.internal().base(), heap.internal().end());
  alloc::MappedRange internal[256];
  const size_t internal_count = std::min(alloc::internal_mappings(internal, 256), size_t{256});
  for (size_t i = 0; i < internal_count; ++i) exclude(internal[i].start, internal[i].end);
  // The signal-safe pool holds program blocks (allocated in signal handlers) up to its bump
  // pointer; the rest of its 256 MB reservation is untouched and would only be read as zeros.
  const alloc::AddressReservation& signal_pool = alloc::signal_safe_pool().range();
  exclude(signal_pool.base() + signal_pool.used(), signal_pool.end());
  for (size_t i = 0; i < module_count; ++i) exclude(b.modules[i].start, b.modules[i].end);  // scanned once, below
  for (size_t i = 0; i < own_count; ++i) exclude(own_segments[i].start & ~uintptr_t{4095}, own_segments[i].end);
  // heapkeeper's threads: their frames hold the blocks they are looking at, so their stacks are no
  // roots — but the top of the mapping is glibc's static TLS and thread control block, whose DTV
  // (possibly a tracked block, when glibc reuses a cached stack) must stay reachable.
  alloc::thread_registry().for_each_active([&](alloc::ThreadState& s) {
    if (!s.heapkeeper_thread) return;
    exclude(s.stack_low, frames_and_tls_end(s.stack_low, s.stack_high, static_cast<uintptr_t>(s.handle)));
  });
  // Below each stopped thread's stack pointer (minus the red zone) lies only dead frames; below a
  // parked thread's, only libc's frames of the call it sleeps in (copies of its arguments). Down to
  // the bottom of the thread's own stack, not of the mapping holding it: threads made with a guard
  // size of 0 share one mapping (the kernel merges their stacks), and so do stacks carved from one
  // mmap (pthread_attr_setstack, coroutines); the whole mapping below one thread's stack pointer
  // held the others' live frames and thread control blocks. A thread whose stack is not known, or
  // that runs elsewhere (a coroutine's stack, a signal stack), has nothing taken away.
  size_t stack_count = 0;
  alloc::thread_registry().for_each_active([&](alloc::ThreadState& s) {
    if (s.tid > 0 && s.stack_high > s.stack_low && stack_count < kMaxThreads)
      b.thread_stacks[stack_count++] = {s.tid, s.stack_low, s.stack_high};
  });
  std::sort(b.thread_stacks, b.thread_stacks + stack_count,
            [](const ThreadStack& a, const ThreadStack& c) { return a.tid < c.tid; });
  for (size_t i = 0; i < thread_count; ++i) {
    if (b.threads[i].tid <= 0) continue;
    const uintptr_t sp = b.threads[i].stack_pointer;
    const uintptr_t red_zone = b.threads[i].parked ? 0 : 128;
    const ThreadStack* own = std::lower_bound(b.thread_stacks, b.thread_stacks + stack_count, b.threads[i].tid,
                                              [](const ThreadStack& known, pid_t tid) { return known.tid < tid; });
    if (own == b.thread_stacks + stack_count || own->tid != b.threads[i].tid || sp < own->low || sp >= own->high)
      continue;
    if (const MemoryRange* stack = range_containing(b.anonymous, anonymous_count, sp))
      exclude(std::max(stack->start, own->low), sp > red_zone ? sp - red_zone : sp);
  }
  // The stacks glibc keeps after their threads exited (see exited_stack_exclusion.h).
  excluded += exited_stack_exclusions(b.threads, thread_count, b.anonymous, anonymous_count, b.excluded + excluded,
                                      kMaxRanges - excluded);
  excluded += exited_leader_stack_exclusion(b.anonymous, anonymous_count, b.excluded + excluded, kMaxRanges - excluded);
  // heapkeeper's own TLS block in every thread, heapkeeper's too (own_tls.h); the exited threads'
  // was done above.
  alloc::thread_registry().for_each_active([&](alloc::ThreadState& s) {
    excluded += own_tls_exclusions(static_cast<uintptr_t>(s.handle), b.excluded + excluded, kMaxRanges - excluded);
  });
  const uintptr_t own_sp = job->request->caller_stack_pointer != 0
                               ? job->request->caller_stack_pointer
                               : reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  if (const MemoryRange* stack = range_containing(b.anonymous, anonymous_count, own_sp)) {
    if (job->request->caller_stack_pointer != 0)
      exclude(stack->start, own_sp);
    else
      exclude(stack->start, frames_and_tls_end(stack->start, stack->end,
                                               static_cast<uintptr_t>(pthread_self())));  // this heapkeeper thread's
  }
  std::sort(b.excluded, b.excluded + excluded,
            [](const MemoryRange& a, const MemoryRange& c) { return a.start < c.start; });

  // The heap is read in place from here: blocks the program tagged with a protection key too.
  const AllProtectionKeysOpen keys;
  if (!marker.begin(job->request->graph)) {
    std::snprintf(result.failure, sizeof(result.failure), "could not map the scan's mark buffers");
    world.resume();
    return;
  }
  marker.set_unreadable_heap(b.unreadable, unreadable.count);
  const uint64_t mark_started = monotonic_ns();
  if (ReferenceGraph* graph = job->request->graph)
    record_root_ranges(*graph, *job->request, b, module_count, anonymous_count, file_count, thread_count);
  uint64_t pieces = 0;
  for (size_t i = 0; i < module_count; ++i) {
    marker.scan_root_range(b.modules[i].start, b.modules[i].end);
    ++pieces;
  }
  for (size_t i = 0; i < anonymous_count; ++i)
    scan_minus(marker, b.anonymous[i].start, b.anonymous[i].end, b.excluded, excluded, pieces);
  // A JIT's code: its immediates name blocks at any offset (Marker::scan_unaligned_root_range).
  for (size_t i = 0; i < code_count; ++i)
    for_each_piece_outside(b.code[i].start, b.code[i].end, b.excluded, excluded,
                           [&](uintptr_t from, uintptr_t to) { marker.scan_unaligned_root_range(from, to, false); });
  scan_file_mappings(marker, b, file_count, b.excluded, excluded, pieces);
  for (size_t i = 0; i < thread_count; ++i) {
    if (b.threads[i].tid <= 0) continue;
    const uint64_t* registers = b.threads[i].registers;
    marker.scan_root_range(reinterpret_cast<uintptr_t>(registers),
                           reinterpret_cast<uintptr_t>(registers + b.threads[i].register_count));
  }
  if (job->request->caller_registers != nullptr) {
    const auto start = reinterpret_cast<uintptr_t>(job->request->caller_registers);
    marker.scan_root_range(start, start + job->request->caller_register_count * sizeof(uint64_t));
  }
  // ---- Pointers the program handed to the kernel (epoll data, timer and AIO sigevents, ...), which
  // it may keep nowhere else while they are registered (kernel_roots.h). Read without a lock.
  for_each_kernel_root_range([&](uintptr_t start, uintptr_t end) {
    marker.scan_root_range(start, end);
    ++pieces;
  });
  // ----
  // Allocations made before the private heap existed are the program's too.
  const alloc::BootstrapPool& pool = alloc::bootstrap_pool();
  const auto pool_start = reinterpret_cast<uintptr_t>(&pool);
  marker.scan_root_range(pool_start, pool_start + pool.used());
  marker.propagate();
  result.references = marker.summarise_references();
  result.leaks = marker.classify_leaks(result.leak_count);
  if (marker.unreadable_heap_failed()) {
    // Blocks the unread bytes point to would look unreachable: no verdict from this scan.
    std::snprintf(result.failure, sizeof(result.failure),
                  "memory the program made unreadable (mprotect) cannot be read through /proc/thread-self/mem");
    result.leaks = nullptr;
    result.leak_count = 0;
    world.resume();
    return;
  }
  result.mark_ns = monotonic_ns() - mark_started;
  result.root_ranges = pieces;
  result.figures = marker.figures();
  world.resume();
  result.pause_ns = monotonic_ns() - stop_started;
  result.ok = true;
}

}  // namespace

ScanResult scan_heap(const ScanRequest& request, Marker& marker) {
  ScanResult result;
  ScanBuffers buffers;
  if (!buffers.map()) {
    std::snprintf(result.failure, sizeof(result.failure), "could not map the scan buffers");
    return result;
  }
  look_up_static_tls_layout();
  ScanJob job{own_module_base(), &request, &marker, &buffers, &result};
  look_up_own_tls(job.own_base);
  // The signal fallback entered inside the loader's lock would find a thread that blocked every
  // signal just before (libunwind, around an unwind step) waiting for that lock: it could not
  // answer, and the scan gave up after 3 s (every run of a perl under strace -f with scans).
  // Entered here, such a block ends on its own; later ones keep SIGPWR deliverable (world_stop.h).
  foresee_stop_method();
  with_loader_lock(scan_with_world_stopped, &job);
  return result;
}

}  // namespace heapkeeper::collect
