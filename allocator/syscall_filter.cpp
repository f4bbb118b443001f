// The process's seccomp state, as far as heapkeeper needs it (see syscall_filter.h).
#include "allocator/syscall_filter.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "allocator/bounded_text.h"
#include "allocator/raw_syscall.h"

namespace heapkeeper::alloc {
namespace {

enum State : int { kUnknown = 0, kNone = 1, kFilter = 2 };
std::atomic<int> g_state{kUnknown};
std::atomic<bool> g_no_new_privileges{false};

// The value after "\n<name>" in `text`, or 0 when the field is missing.
uint64_t status_field(const char* text, const char* name) {
  const char* field = std::strstr(text, name);
  if (field == nullptr) return 0;
  field += std::strlen(name);
  while (*field == '\t') ++field;
  return leading_decimal(field);
}

}  // namespace

DebugRestrictions read_debug_restrictions(const char* status_path) noexcept {
  DebugRestrictions restrictions;
  const int fd = ::open(status_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    // No /proc (sandboxes and chroots, which is where inherited filters are): the kernel answers
    // prctl(PR_GET_SECCOMP) with 2 under a filter (-1 with EINVAL without seccomp support). A
    // tracer cannot be told without /proc; ptrace's own refusal says so at the scan.
    restrictions.seccomp = ::prctl(PR_GET_SECCOMP, 0, 0, 0, 0) > 0;
    return restrictions;
  }
  char text[4096];
  size_t length = 0;
  for (ssize_t got = 1; got > 0 && length < sizeof(text) - 1;) {
    got = ::read(fd, text + length, sizeof(text) - 1 - length);
    if (got > 0) length += static_cast<size_t>(got);
  }
  ::close(fd);
  text[length] = '\0';
  // "Seccomp:\t2" is a filter (1, strict mode, would allow nothing but read and write anyway).
  restrictions.seccomp = status_field(text, "\nSeccomp:") != 0;
  restrictions.traced = status_field(text, "\nTracerPid:") != 0;
  return restrictions;
}

bool syscall_filter_installed() noexcept {
  int state = g_state.load(std::memory_order_acquire);
  if (state == kUnknown) {
    // A filter this process inherited across exec; read once, when first asked.
    int expected = kUnknown;
    const int read = read_debug_restrictions("/proc/self/status").seccomp ? kFilter : kNone;
    g_state.compare_exchange_strong(expected, read, std::memory_order_acq_rel);
    state = g_state.load(std::memory_order_acquire);
  }
  return state == kFilter;
}

void note_syscall_filter() noexcept { g_state.store(kFilter, std::memory_order_release); }

bool syscall_filter_known_absent() noexcept {
  return g_state.load(std::memory_order_acquire) == kNone && !g_no_new_privileges.load(std::memory_order_acquire);
}

void note_no_new_privileges() noexcept { g_no_new_privileges.store(true, std::memory_order_release); }

MemorySharing memory_shared_with(int pid) noexcept {
  if (syscall_filter_installed() || !syscall_filter_known_absent()) return MemorySharing::kUnknown;
  const long same = raw_syscall(SYS_kcmp, raw_syscall(SYS_getpid), pid, KCMP_VM, 0, 0);
  if (same == 0) return MemorySharing::kShared;
  // Another memory (an exec, a zombie's none), or gone.
  if (same > 0 || same == -ESRCH) return MemorySharing::kNotShared;
  return MemorySharing::kUnknown;
}

}  // namespace heapkeeper::alloc
