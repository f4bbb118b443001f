// Implementation of the ptrace stop-the-world (see ptrace_stop.h).
#include "collector/ptrace_stop.h"

#include <elf.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

#include "allocator/internal_mappings.h"
#include "allocator/raw_syscall.h"
#include "collector/blocking_call.h"
#include "collector/os_primitives.h"
#include "collector/xsave_image.h"
#include "report/register_words.h"

// glibc's own name for clone (exported since 2.2.5), which no wrapper interposes.
extern "C" int __clone(int (*function)(void*), void* stack, int flags, void* argument, ...);

namespace heapkeeper::collect {
namespace {

enum Phase : uint32_t { kStarting, kGo, kStopped, kFailed, kRefusedPhase, kResume, kDone };

struct TracerJob {
  pid_t pid = 0;
  pid_t scanner = 0;
  const pid_t* excluded = nullptr;
  size_t excluded_count = 0;
  StoppedThread* slots = nullptr;
  size_t capacity = 0;
  size_t count = 0;
  std::atomic<uint32_t> phase{kStarting};
  long error = 0;        // -errno of the failing ptrace call
  pid_t failed_tid = 0;  // the thread it was about
  const char* what = "";
  bool timed_out = false;  // the failure was the deadline
  XsaveLayout layout;      // asked of CPUID once per scan, by the scanner
};

constexpr size_t kTracerStackBytes = size_t{256} * 1024;
constexpr size_t kMaxListedThreads = 8192;  // 32 KiB of the tracer's stack
constexpr long kStopTimeoutNs = 3'000'000'000L;
// An XSAVE image up to AVX-512's last component (Hi16_ZMM ends at byte 2688 in the standard
// layout of every CPU that has it), on the tracer's stack.
constexpr size_t kXstateBufferBytes = 4096;

struct TracerState {
  TracerJob* job = nullptr;
  void* stack = nullptr;
  pid_t tracer = 0;
  bool active = false;
} g_tracer;

void raw_futex_wait(std::atomic<uint32_t>* word, uint32_t expected, long timeout_ms) {
  timespec timeout{timeout_ms / 1000, (timeout_ms % 1000) * 1000000};
  alloc::raw_syscall(SYS_futex, reinterpret_cast<long>(word), FUTEX_WAIT_PRIVATE, expected,
                     reinterpret_cast<long>(&timeout));
}
void raw_futex_wake(std::atomic<uint32_t>* word) {
  alloc::raw_syscall(SYS_futex, reinterpret_cast<long>(word), FUTEX_WAKE_PRIVATE, INT32_MAX);
}
long raw_ptrace(long request, pid_t tid, long address = 0, long data = 0) {
  return alloc::raw_syscall(SYS_ptrace, request, tid, address, data);
}
long raw_now_ns() {
  timespec now;
  alloc::raw_syscall(SYS_clock_gettime, CLOCK_MONOTONIC, reinterpret_cast<long>(&now));
  return now.tv_sec * 1'000'000'000L + now.tv_nsec;
}

// Waits until the interrupted `tid` reports its stop, passing on any signal that arrives first.
// Returns 1 stopped, 0 gone, -1 timed out.
int wait_for_stop(pid_t tid, long deadline) {
  for (;;) {
    int status = 0;
    const long waited = alloc::raw_syscall(SYS_wait4, tid, reinterpret_cast<long>(&status), WNOHANG | __WALL, 0);
    if (waited == -ECHILD || waited == -ESRCH) return 0;
    if (waited == tid) {
      if (WIFEXITED(status) || WIFSIGNALED(status)) return 0;
      if (WIFSTOPPED(status)) {
        if ((status >> 16) == PTRACE_EVENT_STOP) return 1;  // our interrupt, or a group stop
        // A signal of the program's, arriving first: deliver it, then the interrupt follows.
        raw_ptrace(PTRACE_CONT, tid, 0, WSTOPSIG(status));
        continue;
      }
    }
    if (raw_now_ns() > deadline) return -1;
    timespec pause{0, 200'000};
    alloc::raw_syscall(SYS_nanosleep, reinterpret_cast<long>(&pause), 0);
  }
}

void detach_all(TracerJob& job) {
  for (size_t i = 0; i < job.count; ++i) {
    StoppedThread& t = job.slots[i];
    if (t.tid <= 0) continue;
    if (t.parked) {
      alloc::ThreadState* state = thread_state_of(t.tid);
      if (state != nullptr) unpark(state->blocking_call);
      // A signal that arrived during the scan stopped it before its handler: pass it on now. A
      // thread still asleep is detached by the kernel when the tracer exits.
      int status = 0;
      if (alloc::raw_syscall(SYS_wait4, t.tid, reinterpret_cast<long>(&status), WNOHANG | __WALL, 0) == t.tid &&
          WIFSTOPPED(status)) {
        const int signal = (status >> 16) == PTRACE_EVENT_STOP ? 0 : WSTOPSIG(status);
        raw_ptrace(PTRACE_DETACH, t.tid, 0, signal);
      }
      continue;
    }
    raw_ptrace(PTRACE_DETACH, t.tid, 0, 0);
  }
}

// Seizes and stops one thread into `slot`. Returns 1 done (stopped or parked), 0 gone, -1 refused
// (job.error set), -2 timed out.
int stop_one(TracerJob& job, StoppedThread& slot, long deadline) {
  const pid_t tid = slot.tid;
  alloc::ThreadState* state = thread_state_of(tid);
  const bool parked = state != nullptr && try_park(state->blocking_call);
  const long seized = raw_ptrace(PTRACE_SEIZE, tid, 0, 0);
  if (seized != 0) {
    if (parked) unpark(state->blocking_call);
    if (seized == -ESRCH) return 0;
    // The kernel refuses to seize a thread that has exited but is still listed (a zombie until
    // its process reaps it): it runs no code and its stack is no root, so it counts as gone.
    if (seized == -EPERM && alloc::thread_has_exited(job.pid, tid)) return 0;
    job.error = seized;
    job.failed_tid = tid;
    job.what = "PTRACE_SEIZE";
    return -1;
  }
  slot.seized = true;
  if (parked && parked_thread_settles(job.pid, tid, state->blocking_call, kParkPatienceNs)) {
    slot.parked = true;
    take_parked_registers(slot, state->blocking_call);
    return 1;
  }
  if (parked) unpark(state->blocking_call);
  if (raw_ptrace(PTRACE_INTERRUPT, tid) != 0) return 0;
  const int stopped = wait_for_stop(tid, deadline);
  if (stopped <= 0) return stopped == 0 ? 0 : -2;
  user_regs_struct regs;
  iovec vector{&regs, sizeof(regs)};
  if (raw_ptrace(PTRACE_GETREGSET, tid, NT_PRSTATUS, reinterpret_cast<long>(&vector)) != 0) return 0;
  static_assert(sizeof(regs) <= sizeof(slot.registers));
  std::memcpy(slot.registers, &regs, sizeof(regs));
  slot.register_count = sizeof(regs) / sizeof(uint64_t);
  slot.stack_pointer = static_cast<uintptr_t>(regs.rsp);
  // The vector registers (report/register_words.h): a pointer may live only there. NT_X86_XSTATE
  // holds them all, in XSAVE's standard layout; only the part up to the last component a scan
  // reads is asked for (the kernel cuts the image at the buffer, leaving out AMX's 8 KiB of tiles).
  alignas(64) unsigned char xstate[kXstateBufferBytes];
  const size_t wanted = std::min(kXstateBufferBytes, (size_t{job.layout.end} + 7) / 8 * 8);
  std::memset(xstate, 0, wanted);
  iovec xstate_vector{xstate, wanted};
  if (wanted != 0 && raw_ptrace(PTRACE_GETREGSET, tid, NT_X86_XSTATE, reinterpret_cast<long>(&xstate_vector)) == 0) {
    const uint32_t count = take_ptrace_xstate(xstate, xstate_vector.iov_len, job.layout, slot.registers);
    if (count != 0) {
      slot.register_count = count;
      return 1;
    }
  }
  // No XSAVE here: the SSE registers (xmm0..15) and st0..7 from FXSAVE's layout.
  user_fpregs_struct fpregs;
  iovec fp_vector{&fpregs, sizeof(fpregs)};
  if (raw_ptrace(PTRACE_GETREGSET, tid, NT_PRFPREG, reinterpret_cast<long>(&fp_vector)) == 0) {
    static_assert(sizeof(fpregs.xmm_space) == report::kXmmWords * sizeof(uint64_t));
    static_assert(sizeof(regs) / sizeof(uint64_t) == report::kXmmAt);
    std::memcpy(slot.registers + report::kXmmAt, fpregs.xmm_space, sizeof(fpregs.xmm_space));
    static_assert(sizeof(fpregs.st_space) == size_t{16} * report::kX87Registers);
    take_x87(fpregs.st_space, slot.registers);
    slot.register_count = report::kX87At + report::kX87Words;
  }
  return 1;
}

int tracer_main(void* raw) {
  auto& job = *static_cast<TracerJob*>(raw);
  // If the process dies (kill -9 mid-scan), the tracer must die too: left alone it would wait for
  // a resume that never comes, holding the dead threads traced, and the program unreapable.
  alloc::raw_syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL);
  if (alloc::raw_syscall(SYS_getppid) != job.pid) return 0;  // the parent died before the line above
  while (job.phase.load(std::memory_order_acquire) == kStarting) {
    raw_futex_wait(&job.phase, kStarting, 100);
    if (alloc::raw_syscall(SYS_getppid) != job.pid) return 0;
  }
  const long deadline = raw_now_ns() + kStopTimeoutNs;
  pid_t tids[kMaxListedThreads];
  bool failed = false, refused = false;
  // Stop what is there; list again; until a listing finds nobody new (threads created meanwhile).
  for (int round = 0; round < 64 && !failed; ++round) {
    const size_t listed_count = list_threads(job.pid, tids, kMaxListedThreads);
    if (listed_count > kMaxListedThreads) {
      job.what = "more than 8192 threads";
      failed = true;
      break;
    }
    size_t added = 0;
    for (size_t i = 0; i < listed_count && !failed; ++i) {
      const pid_t tid = tids[i];
      if (tid == job.scanner || contains_tid(job.excluded, job.excluded_count, tid)) continue;
      bool known = false;
      for (size_t j = 0; j < job.count && !known; ++j) known = job.slots[j].tid == tid || job.slots[j].tid == -tid;
      if (known) continue;
      if (job.count >= job.capacity) {
        job.what = "more threads than the scan can track";
        failed = true;
        break;
      }
      StoppedThread& slot = job.slots[job.count++];
      std::memset(&slot, 0, sizeof(slot));
      slot.tid = tid;
      ++added;
      const int result = stop_one(job, slot, deadline);
      if (result == 1) continue;
      if (result == 0) {
        if (!slot.seized) slot.tid = -tid;  // gone: negative, so that the next listing knows it
        continue;
      }
      if (result == -2) {
        job.failed_tid = tid;
        job.what = "did not stop within 3 s";
        job.timed_out = true;
      }
      // The first seize refused means ptrace is not allowed here at all; a later one, a failure.
      refused = result == -1 && job.count == 1;
      failed = true;
    }
    if (added == 0) break;
  }
  if (failed) {
    detach_all(job);
    job.phase.store(refused ? kRefusedPhase : kFailed, std::memory_order_release);
    raw_futex_wake(&job.phase);
    return 0;
  }
  job.phase.store(kStopped, std::memory_order_release);
  raw_futex_wake(&job.phase);
  while (job.phase.load(std::memory_order_acquire) != kResume) {
    raw_futex_wait(&job.phase, kStopped, 1000);
    if (alloc::raw_syscall(SYS_getppid) != job.pid) break;  // orphaned: detach and go
  }
  detach_all(job);
  job.phase.store(kDone, std::memory_order_release);
  raw_futex_wake(&job.phase);
  return 0;
}

// Yama's ptrace_scope 1 lets only ancestors trace: name the tracer as allowed.
bool yama_restricts() {
  static int scope = -2;
  if (scope == -2) {
    scope = -1;
    const int fd = open("/proc/sys/kernel/yama/ptrace_scope", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      char c = 0;
      if (read(fd, &c, 1) == 1) scope = c - '0';
      close(fd);
    }
  }
  return scope == 1;
}

void reap(pid_t tracer) {
  int status = 0;
  // The system call itself: a scan runs while the program is stopped, and must not go through
  // whatever wrapper of waitpid the program or another preloaded library may have.
  while (alloc::raw_syscall(SYS_wait4, tracer, reinterpret_cast<long>(&status), __WALL, 0) == -EINTR) {
  }
}

}  // namespace

PtraceOutcome ptrace_stop(StoppedThread* slots, size_t capacity, const pid_t* excluded, size_t excluded_count,
                          size_t& count, char* failure, size_t failure_size) {
  count = 0;
  static TracerJob job_storage;  // one scan at a time (the collector serialises scans)
  TracerJob& job = job_storage;
  job.pid = getpid();
  job.scanner = current_tid();
  job.excluded = excluded;
  job.excluded_count = excluded_count;
  job.slots = slots;
  job.capacity = capacity;
  job.count = 0;
  job.error = 0;
  job.failed_tid = 0;
  job.timed_out = false;
  job.what = "";
  job.layout = query_xsave_layout();
  job.phase.store(kStarting, std::memory_order_release);
  void* stack = alloc::map_internal(kTracerStackBytes, true);
  if (stack == nullptr) {
    std::snprintf(failure, failure_size, "could not map the tracer's stack");
    return PtraceOutcome::kFailed;
  }
  const int saved_errno = errno;
  // The tracer starts with every signal blocked. It inherits copies of the program's signal
  // handlers, and would otherwise run them: a SIGCHLD handler that calls waitpid (bash's) would
  // take the stop reports the tracer waits for. Blocked here, for the instant of the clone, with
  // the raw call: heapkeeper's own sigprocmask wrapper edits masks.
  uint64_t all_signals = ~uint64_t{0}, previous_mask = 0;
  alloc::raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&all_signals),
                     reinterpret_cast<long>(&previous_mask), sizeof(uint64_t));
  // No exit signal: the program's wait() and SIGCHLD handlers never see the tracer. glibc's
  // __clone, not clone: the exported clone is heapkeeper's wrapper (preload/clone_call.cpp), whose
  // first call looks the original up with dlsym, and with the world stopped the loader's lock may
  // be held by a stopped thread inside dlopen (integration.transparent_scans.dlopen hung so).
  const pid_t tracer = __clone(tracer_main, static_cast<char*>(stack) + kTracerStackBytes,
                               CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_UNTRACED, &job);
  alloc::raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&previous_mask), 0, sizeof(uint64_t));
  if (tracer < 0) {
    std::snprintf(failure, failure_size, "clone failed: %s", std::strerror(errno));
    errno = saved_errno;
    alloc::unmap_internal(stack, kTracerStackBytes);
    return PtraceOutcome::kRefused;
  }
  if (yama_restricts()) prctl(PR_SET_PTRACER, tracer, 0, 0, 0);
  job.phase.store(kGo, std::memory_order_release);
  futex_wake_all(&job.phase);
  bool tracer_died = false, reaped = false;
  int tracer_status = 0;
  for (;;) {
    const uint32_t phase = job.phase.load(std::memory_order_acquire);
    if (phase == kStopped || phase == kFailed || phase == kRefusedPhase) break;
    futex_wait(&job.phase, phase, 100);
    if (alloc::raw_syscall(SYS_wait4, tracer, reinterpret_cast<long>(&tracer_status), WNOHANG | __WALL, 0) == tracer) {
      reaped = true;
      const uint32_t last = job.phase.load(std::memory_order_acquire);
      // Gone without a verdict: crashed (the kernel detached its tracees).
      tracer_died = last != kFailed && last != kRefusedPhase;
      break;
    }
  }
  const uint32_t phase = job.phase.load(std::memory_order_acquire);
  if (tracer_died) {
    // Threads it left parked would wait for the end of a scan forever.
    alloc::thread_registry().for_each_active([](alloc::ThreadState& s) { unpark(s.blocking_call); });
    std::snprintf(failure, failure_size, "the tracer task died (%s %d)",
                  WIFSIGNALED(tracer_status) ? "signal" : "exit status",
                  WIFSIGNALED(tracer_status) ? WTERMSIG(tracer_status) : WEXITSTATUS(tracer_status));
    alloc::unmap_internal(stack, kTracerStackBytes);
    errno = saved_errno;
    return PtraceOutcome::kFailed;
  }
  if (phase != kStopped) {
    if (job.error != 0)
      std::snprintf(failure, failure_size, "%s of thread %d: %s", job.what, static_cast<int>(job.failed_tid),
                    std::strerror(static_cast<int>(-job.error)));
    else if (job.failed_tid != 0)
      std::snprintf(failure, failure_size, "thread %d %s", static_cast<int>(job.failed_tid), job.what);
    else
      std::snprintf(failure, failure_size, "%s", job.what);
    if (!reaped) reap(tracer);
    alloc::unmap_internal(stack, kTracerStackBytes);
    errno = saved_errno;
    if (phase == kRefusedPhase) return PtraceOutcome::kRefused;
    return job.timed_out ? PtraceOutcome::kTimedOut : PtraceOutcome::kFailed;
  }
  count = job.count;
  g_tracer = {&job, stack, tracer, true};
  errno = saved_errno;
  return PtraceOutcome::kStopped;
}

void ptrace_resume() {
  if (!g_tracer.active) return;
  g_tracer.active = false;
  const int saved_errno = errno;
  TracerJob& job = *g_tracer.job;
  job.phase.store(kResume, std::memory_order_release);
  futex_wake_all(&job.phase);
  reap(g_tracer.tracer);
  alloc::unmap_internal(g_tracer.stack, kTracerStackBytes);
  errno = saved_errno;
}

}  // namespace heapkeeper::collect
