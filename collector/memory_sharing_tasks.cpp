// Children that share this process's memory (see memory_sharing_tasks.h).
#include "collector/memory_sharing_tasks.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "allocator/raw_syscall.h"
#include "allocator/syscall_filter.h"

namespace heapkeeper::collect {
namespace {

// A slot holds a child's pid, 0 when free. Beyond 64 such children alive at once the others go
// unnoted (README, "Limits").
constexpr int kSlots = 64;
std::atomic<pid_t> g_sharing[kSlots];

// Whether `pid` is alive and not a zombie, from /proc/PID/stat's state; true when it cannot be
// read for another reason than its absence (no /proc: assume it runs).
bool alive(pid_t pid) {
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const long fd = alloc::raw_syscall(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fd != -ENOENT && fd != -ESRCH;
  char text[512];
  const long length = alloc::raw_syscall(SYS_read, fd, reinterpret_cast<long>(text), sizeof text - 1);
  alloc::raw_syscall(SYS_close, fd);
  if (length <= 0) return true;
  text[length] = '\0';
  // "pid (comm) S ...": the state follows the last ')' (a comm may hold parentheses).
  const char* state = nullptr;
  for (const char* p = text; *p != '\0'; ++p)
    if (*p == ')') state = p;
  if (state == nullptr || state[1] != ' ') return true;
  return state[2] != 'Z' && state[2] != 'X';
}

// Whether the child `pid` still shares this process's memory. A pid that names a thread of this
// process is not the child's any more: the child ended and a thread of the program took its number
// (kcmp said "the same memory" for the thread's whole life, and every scan, the exit scan too, was
// skipped: an adversarial round, helper-62).
bool still_sharing(pid_t pid) {
  char task[48];
  std::snprintf(task, sizeof task, "/proc/self/task/%d", static_cast<int>(pid));
  if (alloc::raw_syscall(SYS_faccessat, AT_FDCWD, reinterpret_cast<long>(task), F_OK, 0) == 0) return false;
  switch (alloc::memory_shared_with(pid)) {
    case alloc::MemorySharing::kShared:
      return true;
    case alloc::MemorySharing::kNotShared:
      return false;
    case alloc::MemorySharing::kUnknown:
      break;
  }
  return alive(pid);  // kcmp not asked or refused (a filter, no CONFIG_KCMP): alive is sharing
}

}  // namespace

void note_memory_sharing_task(pid_t pid) noexcept {
  if (pid <= 0) return;
  for (std::atomic<pid_t>& slot : g_sharing) {
    pid_t expected = 0;
    if (slot.compare_exchange_strong(expected, pid, std::memory_order_acq_rel)) return;
  }
}

pid_t memory_sharing_task() noexcept {
  for (std::atomic<pid_t>& slot : g_sharing) {
    const pid_t pid = slot.load(std::memory_order_acquire);
    if (pid == 0) continue;
    if (still_sharing(pid)) return pid;
    pid_t expected = pid;
    slot.compare_exchange_strong(expected, 0, std::memory_order_acq_rel);
  }
  return 0;
}

}  // namespace heapkeeper::collect
