// The process's seccomp state, as far as heapkeeper needs it (see syscall_filter.h).
#include "allocator/syscall_filter.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace heapkeeper::alloc {
namespace {

enum State : int { kUnknown = 0, kNone = 1, kFilter = 2 };
std::atomic<int> g_state{kUnknown};

// "Seccomp:\t2" in /proc/self/status: a filter this process inherited (or 1, strict mode, in
// which nothing but read and write would be allowed anyway). Read once, when first asked. Where
// /proc is not mounted (sandboxes and chroots, which are where inherited filters are), the kernel
// answers prctl(PR_GET_SECCOMP) with 2 under a filter (-1 with EINVAL without seccomp support).
int read_inherited_state() {
  const int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ::prctl(PR_GET_SECCOMP, 0, 0, 0, 0) > 0 ? kFilter : kNone;
  char text[4096];
  size_t length = 0;
  for (ssize_t got = 1; got > 0 && length < sizeof(text) - 1;) {
    got = ::read(fd, text + length, sizeof(text) - 1 - length);
    if (got > 0) length += static_cast<size_t>(got);
  }
  ::close(fd);
  text[length] = '\0';
  const char* field = std::strstr(text, "\nSeccomp:");
  if (field == nullptr) return kNone;
  field += std::strlen("\nSeccomp:");
  while (*field == ' ' || *field == '\t') ++field;
  return *field == '0' ? kNone : kFilter;
}

}  // namespace

bool syscall_filter_installed() noexcept {
  int state = g_state.load(std::memory_order_acquire);
  if (state == kUnknown) {
    int expected = kUnknown;
    const int read = read_inherited_state();
    g_state.compare_exchange_strong(expected, read, std::memory_order_acq_rel);
    state = g_state.load(std::memory_order_acquire);
  }
  return state == kFilter;
}

void note_syscall_filter() noexcept { g_state.store(kFilter, std::memory_order_release); }

}  // namespace heapkeeper::alloc
