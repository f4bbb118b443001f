// Taking the suspend signal out of the program's signalfds (see signalfd_masks.h).
#include "collector/signalfd_masks.h"

#include <fcntl.h>
#include <sys/syscall.h>

#include <cstdint>
#include <cstring>

#include "allocator/raw_syscall.h"

namespace heapkeeper::collect {
namespace {

// "/proc/self/fdinfo/N": the kernel prints a signalfd's mask there as "sigmask:\t" and 16 hex
// digits, bit N-1 for signal N, as SigBlk in /proc/PID/status.
bool read_signalfd_mask(long fd, uint64_t& mask) {
  char path[64] = "/proc/self/fdinfo/";
  alloc::append_decimal(path + std::strlen(path), fd)[0] = '\0';
  const long info = alloc::raw_syscall(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path), O_RDONLY | O_CLOEXEC);
  if (info < 0) return false;
  char text[512];
  const long n = alloc::raw_syscall(SYS_read, info, reinterpret_cast<long>(text), sizeof(text) - 1);
  alloc::raw_syscall(SYS_close, info);
  if (n <= 0) return false;
  text[n] = '\0';
  const char* field = std::strstr(text, "sigmask:");
  if (field == nullptr) return false;
  field += std::strlen("sigmask:");
  while (*field == '\t' || *field == ' ') ++field;
  mask = 0;
  int digits = 0;
  for (;; ++field, ++digits) {
    const char c = *field;
    int value = -1;
    if (c >= '0' && c <= '9') value = c - '0';
    if (c >= 'a' && c <= 'f') value = c - 'a' + 10;
    if (value < 0) break;
    mask = mask << 4 | static_cast<uint64_t>(value);
  }
  return digits > 0;
}

bool is_signalfd(long directory, const char* name) {
  char target[64];
  const long n = alloc::raw_syscall(SYS_readlinkat, directory, reinterpret_cast<long>(name),
                                    reinterpret_cast<long>(target), sizeof(target));
  static constexpr char kSignalfd[] = "anon_inode:[signalfd]";
  return n == static_cast<long>(sizeof(kSignalfd) - 1) && std::memcmp(target, kSignalfd, sizeof(kSignalfd) - 1) == 0;
}

}  // namespace

int drop_signal_from_signalfds(int signal) {
  const uint64_t bit = uint64_t{1} << (signal - 1);
  int changed = 0;
  alloc::for_each_numbered_entry("/proc/self/fd", [&](long directory, const char* name, long fd) {
    uint64_t mask = 0;
    if (!is_signalfd(directory, name) || !read_signalfd_mask(fd, mask) || (mask & bit) == 0) return;
    // signalfd4 on an existing descriptor replaces its mask and keeps its flags. The program's
    // flags and the rest of its mask stay as they are.
    mask &= ~bit;
    if (alloc::raw_syscall(SYS_signalfd4, fd, reinterpret_cast<long>(&mask), sizeof(mask), 0) >= 0) ++changed;
  });
  return changed;
}

}  // namespace heapkeeper::collect
