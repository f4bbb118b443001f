// Linux implementation of the collector's OS primitives (see os_primitives.h).
#include "collector/os_primitives.h"

#include <fcntl.h>
#include <link.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "allocator/errno_kept.h"
#include "allocator/monotonic_clock.h"

namespace heapkeeper::collect {
namespace {

uintptr_t parse_hex(const char*& p) {
  uintptr_t value = 0;
  for (;; ++p) {
    char c = *p;
    if (c >= '0' && c <= '9')
      value = value * 16 + static_cast<uintptr_t>(c - '0');
    else if (c >= 'a' && c <= 'f')
      value = value * 16 + static_cast<uintptr_t>(c - 'a' + 10);
    else
      break;
  }
  return value;
}

struct SegmentQuery {
  MemoryRange* out;
  size_t capacity;
  size_t count;
  uintptr_t excluded_base;
  uintptr_t only_base;
};

int collect_segments(dl_phdr_info* info, size_t, void* data) {
  auto* query = static_cast<SegmentQuery*>(data);
  if (info->dlpi_addr == query->excluded_base && query->excluded_base != 0) return 0;
  if (query->only_base != 0 && info->dlpi_addr != query->only_base) return 0;
  const uintptr_t page = getauxval(AT_PAGESZ);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_W)) continue;
    uintptr_t start = (info->dlpi_addr + ph.p_vaddr) & ~uintptr_t{7};
    // To the end of the segment's last page, which is mapped with it: the dynamic linker's
    // start-up allocator hands out the rest of its own last page (the main program's link_map is
    // there), and the link_map holds the only pointer to the list a dlopen(RTLD_GLOBAL) mallocs.
    uintptr_t end = (info->dlpi_addr + ph.p_vaddr + ph.p_memsz + page - 1) & ~(page - 1);
    if (query->count < query->capacity) query->out[query->count] = {start, end};
    ++query->count;
  }
  return 0;
}

struct LockedVisit {
  void (*visit)(void*);
  void* data;
  bool done;
};

int run_once_under_lock(dl_phdr_info*, size_t, void* data) {
  auto* visit = static_cast<LockedVisit*>(data);
  if (!visit->done) {
    visit->done = true;
    visit->visit(visit->data);
  }
  return 1;  // stop iterating: the lock was needed, not the modules
}

// A path in /proc/PID/maps naming a regular file, a POSIX shared-memory object or a memfd
// ("/memfd:NAME (deleted)"): not a device's memory (/dev/dri, a frame buffer), nor /proc or /sys
// (a PCI resource file), whose reading may act on the device or fault.
bool is_file_path(const char* p, const char* end_of_line) {
  const auto starts = [&](const char* prefix) {
    const size_t n = std::strlen(prefix);
    return static_cast<size_t>(end_of_line - p) >= n && std::strncmp(p, prefix, n) == 0;
  };
  if (p >= end_of_line || *p != '/') return false;
  if (starts("/dev/")) return starts("/dev/shm/");
  return !starts("/proc/") && !starts("/sys/");
}

}  // namespace

size_t read_anonymous_writable_mappings(MemoryRange* out, size_t capacity, char* scratch, size_t scratch_size,
                                        int* open_error, UnreadableQuery* unreadable, FileMappingQuery* files,
                                        CodeMappingQuery* code) {
  const alloc::ErrnoKept keep;
  if (open_error != nullptr) *open_error = 0;
  int fd = static_cast<int>(::syscall(SYS_openat, AT_FDCWD, "/proc/thread-self/maps", O_RDONLY | O_CLOEXEC));
  if (fd < 0) {
    if (open_error != nullptr) *open_error = errno;
    return 0;
  }
  size_t length = 0;
  while (length + 1 < scratch_size) {
    ssize_t n = ::syscall(SYS_read, fd, scratch + length, scratch_size - 1 - length);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    length += static_cast<size_t>(n);
  }
  ::syscall(SYS_close, fd);
  if (length + 1 >= scratch_size) {
    // Cut short: the mappings past it (the main thread's stack among the last) would be no roots,
    // and collect mode would free what only they name.
    if (open_error != nullptr) *open_error = E2BIG;
    return 0;
  }
  scratch[length] = '\0';

  size_t count = 0;
  for (const char* line = scratch; *line != '\0';) {
    const char* end_of_line = std::strchr(line, '\n');
    if (end_of_line == nullptr) end_of_line = line + std::strlen(line);
    const char* p = line;
    uintptr_t start = parse_hex(p);
    if (*p == '-') ++p;
    uintptr_t end = parse_hex(p);
    while (*p == ' ') ++p;
    const bool readable = p[0] == 'r', writable = p[1] == 'w', executable = p[2] == 'x', is_private = p[3] == 'p';
    // Fields: perms offset dev inode pathname
    for (int field = 0; field < 4 && p < end_of_line; ++field) {
      while (p < end_of_line && *p != ' ') ++p;
      while (p < end_of_line && *p == ' ') ++p;
    }
    // Of the bracketed names, only those the program's data has: the kernel's own ([vvar],
    // [vvar_vclock], [vdso], [vsyscall], [uprobes]...) are not the program's, and reading some of
    // them faults (a clock page the hypervisor does not provide is SIGBUS: [vvar_vclock], read once
    // read-only mappings were roots, killed programs scanned without process_vm_readv).
    const bool anonymous = p >= end_of_line || std::strncmp(p, "[heap]", 6) == 0 ||
                           std::strncmp(p, "[stack]", 7) == 0 || std::strncmp(p, "[anon:", 6) == 0 ||
                           (is_private && end_of_line - p == 9 && std::strncmp(p, "/dev/zero", 9) == 0);
    // Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS shows as "/dev/zero (deleted)", or as
    // "[anon_shmem:NAME]" once named) and System V segments hold the program's pointers as private
    // memory does: a block kept only there (a table shared with forked workers) was reported
    // leaked, and collect mode would have freed it. Neither can shrink under the mapping, so
    // reading it never faults; memfd and file mappings can (a read past the file's end is SIGBUS),
    // and stay out.
    const bool shared_anonymous = !is_private && p < end_of_line &&
                                  (std::strncmp(p, "/dev/zero (deleted)", 19) == 0 ||
                                   std::strncmp(p, "/SYSV", 5) == 0 || std::strncmp(p, "[anon_shmem:", 12) == 0);
    // Read-only private memory is a root too: a table filled and then sealed with
    // mprotect(PROT_READ) keeps the blocks it points to alive (only the writable was read, and
    // collect mode freed blocks the table still named).
    // Write-only memory (mprotect(PROT_WRITE)) too: the program reads it on x86-64, whose pages
    // cannot be write-only, and a block named only there was freed under it by collect mode.
    if (!readable && is_private && anonymous && unreadable != nullptr && start < unreadable->high &&
        end > unreadable->low) {
      if (unreadable->count < unreadable->capacity) unreadable->out[unreadable->count] = {start, end};
      ++unreadable->count;
    } else if ((readable || writable) && ((is_private && anonymous) || (writable && shared_anonymous))) {
      if (count < capacity) out[count] = {start, end};
      ++count;
      if (code != nullptr && executable && readable) {
        if (code->count < code->capacity) code->out[code->count] = {start, end};
        ++code->count;
      }
    } else if (files != nullptr && readable && (is_private ? !executable : writable || executable) && !anonymous &&
               !shared_anonymous && is_file_path(p, end_of_line)) {
      if (files->count < files->capacity) files->out[files->count] = {start, end, !is_private, writable, executable};
      ++files->count;
    }
    line = *end_of_line == '\n' ? end_of_line + 1 : end_of_line;
  }
  return count;
}

size_t module_writable_segments(MemoryRange* out, size_t capacity, uintptr_t excluded_base) {
  SegmentQuery query{out, capacity, 0, excluded_base, 0};
  dl_iterate_phdr(collect_segments, &query);  // the loader lock is recursive: fine inside the lock
  return query.count;
}

size_t module_writable_segments_of(MemoryRange* out, size_t capacity, uintptr_t base) {
  if (base == 0) return 0;
  SegmentQuery query{out, capacity, 0, 0, base};
  dl_iterate_phdr(collect_segments, &query);
  return query.count;
}

void with_loader_lock(void (*visit)(void*), void* data) {
  LockedVisit locked{visit, data, false};
  dl_iterate_phdr(run_once_under_lock, &locked);
  if (!locked.done) visit(data);  // no modules at all (static program): nothing to lock against
}

bool signal_thread(pid_t tid, int signal) {
  const alloc::ErrnoKept keep;
  return ::syscall(SYS_tgkill, ::getpid(), tid, signal) == 0;
}

bool thread_exists(pid_t tid) { return signal_thread(tid, 0); }

pid_t current_tid() { return static_cast<pid_t>(::syscall(SYS_gettid)); }

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, long timeout_ms) {
  const alloc::ErrnoKept keep;
  timespec timeout{timeout_ms / 1000, (timeout_ms % 1000) * 1000000};
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected,
            timeout_ms >= 0 ? &timeout : nullptr, nullptr, 0);
}

void futex_wake_all(std::atomic<uint32_t>* word) {
  const alloc::ErrnoKept keep;
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
}

uint64_t monotonic_ns() { return alloc::monotonic_ns(); }

}  // namespace heapkeeper::collect
