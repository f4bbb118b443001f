// Implementation of the signal-based stop-the-world (see world_stop.h).
#include "collector/world_stop.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "collector/os_primitives.h"

namespace heapkeeper::collect {
namespace {

std::atomic<uint32_t> g_stop_epoch{0};
std::atomic<uint32_t> g_resume_epoch{0};
std::atomic<uint32_t> g_acknowledged{0};
std::atomic<StoppedThread*> g_slots{nullptr};
std::atomic<size_t> g_slot_count{0};

void suspend_handler(int, siginfo_t*, void* context) {
  const int saved_errno = errno;
  const uint32_t epoch = g_stop_epoch.load(std::memory_order_acquire);
  StoppedThread* slots = g_slots.load(std::memory_order_acquire);
  const size_t count = g_slot_count.load(std::memory_order_acquire);
  const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
  StoppedThread* mine = nullptr;
  for (size_t i = 0; slots != nullptr && i < count; ++i) {
    if (slots[i].tid == self) {
      mine = &slots[i];
      break;
    }
  }
  if (mine == nullptr || g_resume_epoch.load(std::memory_order_acquire) == epoch) {
    errno = saved_errno;
    return;  // a late signal after the scan, or a thread the scanner is not waiting for
  }
  const auto* uc = static_cast<const ucontext_t*>(context);
  static_assert(sizeof(mine->registers) >= sizeof(uc->uc_mcontext.gregs));
  std::memcpy(mine->registers, uc->uc_mcontext.gregs, sizeof(uc->uc_mcontext.gregs));
  mine->stack_pointer = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]);
  __atomic_store_n(&mine->acknowledged_epoch, epoch, __ATOMIC_RELEASE);
  g_acknowledged.fetch_add(1, std::memory_order_acq_rel);
  futex_wake_all(&g_acknowledged);
  for (;;) {
    uint32_t resumed = g_resume_epoch.load(std::memory_order_acquire);
    if (resumed == epoch) break;
    futex_wait(&g_resume_epoch, resumed, 1000);
  }
  errno = saved_errno;
}

// Lists the tids in /proc/self/task with raw syscalls (no allocation). Returns how many.
size_t list_tasks(pid_t* out, size_t capacity) {
  int fd = static_cast<int>(syscall(SYS_openat, AT_FDCWD, "/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd < 0) return 0;
  size_t count = 0;
  alignas(8) char buffer[8192];
  for (;;) {
    long n = syscall(SYS_getdents64, fd, buffer, sizeof(buffer));
    if (n <= 0) break;
    for (long offset = 0; offset < n;) {
      struct linux_dirent64 {
        uint64_t d_ino;
        int64_t d_off;
        unsigned short d_reclen;
        unsigned char d_type;
        char d_name[1];
      };
      auto* entry = reinterpret_cast<linux_dirent64*>(buffer + offset);
      offset += entry->d_reclen;
      long tid = 0;
      const char* p = entry->d_name;
      if (*p < '0' || *p > '9') continue;
      for (; *p >= '0' && *p <= '9'; ++p) tid = tid * 10 + (*p - '0');
      if (count < capacity) out[count] = static_cast<pid_t>(tid);
      ++count;
    }
  }
  syscall(SYS_close, fd);
  return count;
}

bool contains(const pid_t* list, size_t count, pid_t tid) {
  for (size_t i = 0; i < count; ++i) {
    if (list[i] == tid) return true;
  }
  return false;
}

}  // namespace

bool install_suspend_handler() {
  static std::atomic<bool> installed{false};
  if (installed.load(std::memory_order_acquire)) return true;
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_sigaction = suspend_handler;
  action.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&action.sa_mask);  // nothing else runs on a suspended thread until it resumes
  if (sigaction(kSuspendSignal, &action, nullptr) != 0) return false;
  installed.store(true, std::memory_order_release);
  return true;
}

const sigset_t* without_suspend_signal(int how, const sigset_t* requested, sigset_t* scratch) {
  if (requested == nullptr || how == SIG_UNBLOCK || !sigismember(requested, kSuspendSignal)) return requested;
  *scratch = *requested;
  sigdelset(scratch, kSuspendSignal);
  return scratch;
}

bool WorldStop::stop(StoppedThread* slots, size_t capacity, const pid_t* excluded, size_t excluded_count, size_t& count,
                     char* failure, size_t failure_size) {
  count = 0;
  epoch_ = g_stop_epoch.load(std::memory_order_relaxed) + 1;
  g_acknowledged.store(0, std::memory_order_release);
  g_slots.store(slots, std::memory_order_release);
  g_slot_count.store(0, std::memory_order_release);
  g_stop_epoch.store(epoch_, std::memory_order_release);
  stopped_ = true;
  const pid_t self = current_tid();
  pid_t tasks[4096];
  // Stop what is there; list again; stop the newcomers; until a listing finds nobody new.
  for (int round = 0; round < 64; ++round) {
    const size_t listed = list_tasks(tasks, 4096);
    if (listed > 4096) {
      std::snprintf(failure, failure_size, "more than 4096 threads");
      resume();
      return false;
    }
    size_t added = 0;
    for (size_t i = 0; i < listed; ++i) {
      const pid_t tid = tasks[i];
      if (tid == self || contains(excluded, excluded_count, tid)) continue;
      bool known = false;
      for (size_t j = 0; j < count && !known; ++j) known = slots[j].tid == tid;
      if (known) continue;
      if (count >= capacity) {
        std::snprintf(failure, failure_size, "more threads than the scan can track");
        resume();
        return false;
      }
      StoppedThread& slot = slots[count];
      slot.tid = tid;
      slot.acknowledged_epoch = 0;
      slot.stack_pointer = 0;
      ++count;
      g_slot_count.store(count, std::memory_order_release);    // the handler looks its slot up by tid
      if (!signal_thread(tid, kSuspendSignal)) slot.tid = -1;  // already gone
      ++added;
    }
    // Wait for every signalled thread; one that is gone counts as done.
    const uint64_t deadline = monotonic_ns() + 3'000'000'000ull;
    for (;;) {
      size_t waiting = 0;
      pid_t stuck = 0;
      for (size_t i = 0; i < count; ++i) {
        StoppedThread& s = slots[i];
        if (s.tid <= 0 || __atomic_load_n(&s.acknowledged_epoch, __ATOMIC_ACQUIRE) == epoch_) continue;
        if (!thread_exists(s.tid)) {
          s.tid = -1;
          continue;
        }
        ++waiting;
        stuck = s.tid;
      }
      if (waiting == 0) break;
      if (monotonic_ns() > deadline) {
        std::snprintf(failure, failure_size, "thread %d did not stop within 3 s (does it block SIGPWR?)",
                      static_cast<int>(stuck));
        resume();
        return false;
      }
      uint32_t seen = g_acknowledged.load(std::memory_order_acquire);
      futex_wait(&g_acknowledged, seen, 2);
    }
    if (added == 0) return true;
  }
  std::snprintf(failure, failure_size, "threads kept appearing while stopping the world");
  resume();
  return false;
}

void WorldStop::resume() {
  if (!stopped_) return;
  stopped_ = false;
  g_resume_epoch.store(epoch_, std::memory_order_release);
  futex_wake_all(&g_resume_epoch);
}

}  // namespace heapkeeper::collect
