// Implementation of the signal-based stop-the-world (see world_stop.h).
#include "collector/world_stop.h"

#include <signal.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "allocator/thread_registry.h"
#include "collector/os_primitives.h"

namespace heapkeeper::collect {
namespace {

std::atomic<uint32_t> g_stop_epoch{0};
std::atomic<uint32_t> g_resume_epoch{0};
std::atomic<uint32_t> g_acknowledged{0};

void suspend_handler(int, siginfo_t*, void* context) {
  const int saved_errno = errno;
  alloc::ThreadState* state = alloc::tls_thread.state;
  const uint32_t epoch = g_stop_epoch.load(std::memory_order_acquire);
  if (state == nullptr || state->heapkeeper_thread || g_resume_epoch.load(std::memory_order_acquire) == epoch) {
    errno = saved_errno;
    return;  // not a thread the scanner waits for, or a late signal after the scan
  }
  const auto* uc = static_cast<const ucontext_t*>(context);
  static_assert(sizeof(state->suspended_registers) >= sizeof(uc->uc_mcontext.gregs));
  std::memcpy(state->suspended_registers, uc->uc_mcontext.gregs, sizeof(uc->uc_mcontext.gregs));
  state->suspended_sp = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]);
  state->suspended_epoch.store(epoch, std::memory_order_release);
  g_acknowledged.fetch_add(1, std::memory_order_acq_rel);
  futex_wake_all(&g_acknowledged);
  for (;;) {
    uint32_t resumed = g_resume_epoch.load(std::memory_order_acquire);
    if (resumed == epoch) break;
    futex_wait(&g_resume_epoch, resumed, 1000);
  }
  errno = saved_errno;
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

bool WorldStop::stop(alloc::ThreadState** stopped, size_t capacity, size_t& count, char* failure, size_t failure_size) {
  count = 0;
  epoch_ = g_stop_epoch.load(std::memory_order_relaxed) + 1;
  g_acknowledged.store(0, std::memory_order_release);
  g_stop_epoch.store(epoch_, std::memory_order_release);
  stopped_ = true;
  const pid_t self = current_tid();
  bool overflow = false;
  alloc::thread_registry().for_each_active([&](alloc::ThreadState& s) {
    if (s.heapkeeper_thread || s.tid == self || s.tid == 0) return;
    if (count >= capacity) {
      overflow = true;
      return;
    }
    if (signal_thread(s.tid, kSuspendSignal)) stopped[count++] = &s;
  });
  if (overflow) {
    std::snprintf(failure, failure_size, "more threads than the scan can track");
    resume();
    return false;
  }
  // Wait for every signalled thread; one that is gone (or retired its state) counts as done.
  const uint64_t deadline = monotonic_ns() + 3'000'000'000ull;
  for (;;) {
    size_t waiting = 0;
    pid_t stuck = 0;
    for (size_t i = 0; i < count; ++i) {
      alloc::ThreadState* s = stopped[i];
      if (s == nullptr || s->suspended_epoch.load(std::memory_order_acquire) == epoch_) continue;
      if (!s->in_use.load(std::memory_order_acquire) || !thread_exists(s->tid)) {
        stopped[i] = nullptr;
        continue;
      }
      ++waiting;
      stuck = s->tid;
    }
    if (waiting == 0) break;
    if (monotonic_ns() > deadline) {
      std::snprintf(failure, failure_size, "thread %d did not stop within 3 s (does it block SIGPWR?)", static_cast<int>(stuck));
      resume();
      return false;
    }
    uint32_t seen = g_acknowledged.load(std::memory_order_acquire);
    futex_wait(&g_acknowledged, seen, 2);
  }
  // Compact the list to the threads that really are stopped.
  size_t kept = 0;
  for (size_t i = 0; i < count; ++i) {
    if (stopped[i] != nullptr) stopped[kept++] = stopped[i];
  }
  count = kept;
  return true;
}

void WorldStop::resume() {
  if (!stopped_) return;
  stopped_ = false;
  g_resume_epoch.store(epoch_, std::memory_order_release);
  futex_wake_all(&g_resume_epoch);
}

}  // namespace heapkeeper::collect
