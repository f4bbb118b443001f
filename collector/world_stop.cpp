// The stop-the-world: ptrace first, signals as the fallback (see world_stop.h).
#include "collector/world_stop.h"

#include <asm/prctl.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "allocator/config.h"
#include "allocator/diagnostics.h"
#include "allocator/engine.h"
#include "allocator/raw_syscall.h"
#include "allocator/syscall_filter.h"
#include "collector/blocking_call.h"
#include "collector/os_primitives.h"
#include "collector/ptrace_stop.h"
#include "collector/signalfd_masks.h"
#include "collector/xsave_image.h"

namespace heapkeeper::collect {
namespace {

std::atomic<uint32_t> g_stop_epoch{0};
std::atomic<uint32_t> g_resume_epoch{0};
std::atomic<uint32_t> g_acknowledged{0};
std::atomic<StoppedThread*> g_slots{nullptr};
std::atomic<size_t> g_slot_count{0};
// Where the signal frame's vector registers lie (xsave_image.h), set before the handler is installed.
XsaveLayout g_xsave_layout;

// A scan's suspend signal is queued with this value (rt_tgsigqueueinfo), so that the handler tells
// it from the program's own SIGPWRs, raise() and tgkill() included.
constexpr int kSuspendMark = 0x484b5057;  // "HKPW"

bool send_suspend_signal(pid_t tid) {
  siginfo_t info;
  std::memset(&info, 0, sizeof(info));
  info.si_signo = kSuspendSignal;
  info.si_code = SI_QUEUE;
  info.si_pid = getpid();
  info.si_uid = getuid();
  info.si_value.sival_int = kSuspendMark;
  const int saved_errno = errno;
  const bool sent = syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, kSuspendSignal, &info) == 0;
  errno = saved_errno;
  return sent;
}

// Set once ptrace was refused: every later scan uses signals.
std::atomic<bool> g_signal_mode{false};

// From now on scans use signals: the signalfds the program made before lose SIGPWR (later ones
// never get it, see the signalfd wrapper).
void enter_signal_mode() {
  if (g_signal_mode.exchange(true, std::memory_order_acq_rel)) return;
  drop_signal_from_signalfds(kSuspendSignal);
}
// The program's own SIGPWR disposition, which the suspend handler passes other SIGPWRs to.
struct sigaction g_program_action;
std::atomic<bool> g_program_action_saved{false};

void pass_on_to_program(int signal, siginfo_t* info, void* context) {
  if (!g_program_action_saved.load(std::memory_order_acquire)) return;
  const struct sigaction& action = g_program_action;
  if (action.sa_flags & SA_SIGINFO) {
    if (action.sa_sigaction != nullptr) action.sa_sigaction(signal, info, context);
    return;
  }
  if (action.sa_handler == SIG_IGN) return;
  if (action.sa_handler == SIG_DFL) {
    // SIGPWR's default is to terminate, as it would without heapkeeper.
    struct sigaction restore;
    std::memset(&restore, 0, sizeof(restore));
    restore.sa_handler = SIG_DFL;
    sigaction(signal, &restore, nullptr);
    syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), signal);
    return;
  }
  action.sa_handler(signal);
}

void suspend_handler(int signal, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  const bool from_a_scan = info != nullptr && info->si_code == SI_QUEUE && info->si_pid == getpid() &&
                           info->si_value.sival_int == kSuspendMark;
  const uint32_t epoch = g_stop_epoch.load(std::memory_order_acquire);
  StoppedThread* mine = nullptr;
  if (from_a_scan && g_resume_epoch.load(std::memory_order_acquire) != epoch) {
    StoppedThread* slots = g_slots.load(std::memory_order_acquire);
    const size_t count = g_slot_count.load(std::memory_order_acquire);
    const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
    for (size_t i = 0; slots != nullptr && i < count; ++i) {
      if (slots[i].tid == self) {
        mine = &slots[i];
        break;
      }
    }
  }
  if (mine == nullptr) {
    // Not a scan's, or one that arrived after its scan was over.
    if (!from_a_scan) pass_on_to_program(signal, info, context);
    errno = saved_errno;
    return;
  }
  const auto* uc = static_cast<const ucontext_t*>(context);
  static_assert(sizeof(mine->registers) >= sizeof(uc->uc_mcontext.gregs));
  std::memcpy(mine->registers, uc->uc_mcontext.gregs, sizeof(uc->uc_mcontext.gregs));
  // The gregs hold no segment bases, which ptrace's registers do: a program can keep a pointer in
  // its GS base (wrgsbase, arch_prctl), and under this fallback a block held only there was freed
  // by collect mode (an adversarial round, helper-62). This handler runs on the thread itself.
  static_assert(NGREG + 2 <= report::kXmmAt);
  for (uint32_t i = NGREG; i < report::kXmmAt; ++i) mine->registers[i] = 0;
  unsigned long base = 0;
  if (alloc::raw_syscall(SYS_arch_prctl, ARCH_GET_FS, reinterpret_cast<long>(&base)) == 0)
    mine->registers[NGREG] = base;
  base = 0;
  if (alloc::raw_syscall(SYS_arch_prctl, ARCH_GET_GS, reinterpret_cast<long>(&base)) == 0)
    mine->registers[NGREG + 1] = base;
  mine->register_count = NGREG + 2;
  // The vector registers, saved by the kernel in the signal frame below the interrupted stack
  // pointer (which the scan excludes as dead frames): copied, as ptrace's stop reads them. The
  // frame's fpstate is an XSAVE image (xsave_image.h) with the registers above xmm15.
  if (uc->uc_mcontext.fpregs != nullptr) {
    static_assert(sizeof(uc->uc_mcontext.fpregs->_xmm) == report::kXmmWords * sizeof(uint64_t));
    std::memcpy(mine->registers + report::kXmmAt, uc->uc_mcontext.fpregs->_xmm, sizeof(uc->uc_mcontext.fpregs->_xmm));
    static_assert(sizeof(uc->uc_mcontext.fpregs->_st) == size_t{16} * report::kX87Registers);
    take_x87(uc->uc_mcontext.fpregs->_st, mine->registers);
    mine->register_count = take_signal_frame_xstate(uc->uc_mcontext.fpregs, g_xsave_layout, mine->registers);
  }
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

}  // namespace

const char* stop_method_name(StopMethod method) { return method == StopMethod::kPtrace ? "ptrace" : "signals"; }

bool install_suspend_handler() {
  // Checked before every signal scan: a program that set its own SIGPWR disposition since (even
  // SIG_DFL, which would kill it at the next scan) gets it chained, and the handler reinstalled.
  struct sigaction current;
  if (sigaction(kSuspendSignal, nullptr, &current) != 0) return false;
  if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == suspend_handler) return true;
  g_program_action = current;
  g_program_action_saved.store(true, std::memory_order_release);
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_sigaction = suspend_handler;
  action.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&action.sa_mask);            // nothing else runs on a suspended thread until it resumes
  g_xsave_layout = query_xsave_layout();  // before the handler can run
  return sigaction(kSuspendSignal, &action, nullptr) == 0;
}

// HEAPKEEPER_STOP_METHOD=signals skips ptrace (for tests of the fallback, and for users whose
// environment audits ptrace); "ptrace" or unset is the default.
void read_stop_method_setting() {
  static std::atomic<bool> read{false};
  if (read.exchange(true, std::memory_order_acq_rel)) return;
  if (alloc::config().stop_method == alloc::StopMethod::kSignals) enter_signal_mode();
}

// Reasons not to try ptrace at all, from /proc/thread-self/status: a seccomp filter may kill the
// tracer (or the whole process) for calling ptrace, and a process already traced (gdb, strace)
// refuses. Empty when ptrace may be tried. Async-signal-safe (open and read only).
const char* reason_to_avoid_ptrace() {
  // One the program installed on another thread (without TSYNC), or that this status misses.
  if (alloc::syscall_filter_installed()) return "a seccomp filter is in force";
  const alloc::DebugRestrictions restrictions = alloc::read_debug_restrictions("/proc/thread-self/status");
  if (restrictions.seccomp) return "a seccomp filter is in force";
  if (restrictions.traced) return "the process is already traced";
  return "";
}

// The stop method as far as it is known before any scan: the setting, a filter or a tracer the
// process already has. Asked when the program first blocks SIGPWR, so that masks set before the
// first scan (a daemon blocks every signal at start and reads them from a signalfd) already keep
// SIGPWR deliverable under the fallback. Once; a later scan may still fall back for a reason that
// shows only then (ptrace refused, a filter installed meanwhile: see fall_back_to_signals_now).
void foresee_stop_method() {
  static std::atomic<bool> foreseen{false};
  if (foreseen.load(std::memory_order_acquire) || foreseen.exchange(true, std::memory_order_acq_rel)) return;
  read_stop_method_setting();
  if (!g_signal_mode.load(std::memory_order_acquire) && reason_to_avoid_ptrace()[0] != '\0') enter_signal_mode();
}

namespace {

// A set that blocks every signal a program can block (glibc's sigfillset, which leaves out only
// its own two real-time signals): libunwind's `unwi_full_mask`.
bool blocks_every_signal(const sigset_t* set) {
  for (int signal = 1; signal < 32; ++signal) {
    if (signal == SIGKILL || signal == SIGSTOP) continue;
    if (!sigismember(set, signal)) return false;
  }
  return true;
}

}  // namespace

const sigset_t* without_suspend_signal(int how, const sigset_t* requested, sigset_t* scratch, bool saves_old) {
  if (requested == nullptr || how == SIG_UNBLOCK || !sigismember(requested, kSuspendSignal)) return requested;
  // heapkeeper's own calls, libunwind's save and restore around each unwind step above all, pass
  // unchanged: a restore that left SIGPWR out would unblock it in a thread that had blocked it with
  // a raw rt_sigprocmask, and heapkeeper's own threads block it for good. One exception, under
  // the fallback: libunwind's block of every signal (saving the old mask) in a program thread.
  // Inside it the thread takes the dynamic loader's lock (dl_iterate_phdr), which a signal scan
  // holds while it waits for every thread's answer: with SIGPWR blocked the thread could not
  // answer, and the scan gave up after 3 s, the program stalled for as long (perl with 10 ms
  // scans, two runs in three; every scan of a program run under strace -f). SIGPWR stays
  // deliverable there, so the thread stops in its futex wait; the suspend handler neither unwinds
  // nor allocates. The restore that follows passes unchanged: a raw block of SIGPWR is kept.
  if (alloc::tls_thread.guard != 0) {
    const alloc::ThreadState* state = alloc::tls_thread.state;
    // (The setting counts before the first scan has entered the mode: a block made just before
    // that scan took the lock would otherwise still hold SIGPWR.)
    const bool signal_mode =
        g_signal_mode.load(std::memory_order_acquire) || alloc::config().stop_method == alloc::StopMethod::kSignals;
    if (!saves_old || !signal_mode || state == nullptr || state->heapkeeper_thread || how != SIG_SETMASK ||
        !blocks_every_signal(requested))
      return requested;
    *scratch = *requested;
    sigdelset(scratch, kSuspendSignal);
    return scratch;
  }
  foresee_stop_method();
  if (!g_signal_mode.load(std::memory_order_acquire)) return requested;
  *scratch = *requested;
  sigdelset(scratch, kSuspendSignal);
  return scratch;
}

void fall_back_to_signals_now() {
  // This thread's mask, set before, may block SIGPWR: from now on it must not (other threads'
  // masks are out of reach until they set them again). Even when the mode was already on: a scan
  // may have seen the filter noted a moment ago and chosen signals first. Unblocked before the mode
  // changes, and the signalfds' masks are changed as heapkeeper's own work (internal memory, no
  // stack capture): a scan that chose signals meanwhile holds the dynamic loader's lock while it
  // waits for this thread, which then waited for that lock in libunwind (capturing opendir's
  // allocation) with SIGPWR still blocked, and the scan gave up after 3 s (transparent_scans.signalfd
  // in CI, once).
  sigset_t suspend;
  sigemptyset(&suspend);
  sigaddset(&suspend, kSuspendSignal);
  alloc::raw_syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, reinterpret_cast<long>(&suspend), 0, sizeof(uint64_t));
  alloc::enter_internal();
  enter_signal_mode();
  alloc::leave_internal();
}

void drop_pending_suspend_signal() {
  if (!g_program_action_saved.load(std::memory_order_acquire)) return;  // no signal scan yet
  uint64_t pending = 0;
  if (alloc::raw_syscall(SYS_rt_sigpending, reinterpret_cast<long>(&pending), sizeof(pending)) != 0) return;
  const uint64_t suspend = uint64_t{1} << (kSuspendSignal - 1);
  if ((pending & suspend) == 0) return;
  siginfo_t info;
  const struct timespec now = {0, 0};
  if (alloc::raw_syscall(SYS_rt_sigtimedwait, reinterpret_cast<long>(&suspend), reinterpret_cast<long>(&info),
                         reinterpret_cast<long>(&now), sizeof(suspend)) != kSuspendSignal)
    return;
  const long pid = alloc::raw_syscall(SYS_getpid);
  if (info.si_code == SI_QUEUE && info.si_pid == pid && info.si_value.sival_int == kSuspendMark) return;
  alloc::raw_syscall(SYS_rt_tgsigqueueinfo, pid, alloc::raw_syscall(SYS_gettid), kSuspendSignal,
                     reinterpret_cast<long>(&info));
}

// Whether every task of the process but the caller is one of heapkeeper's own (`excluded`) or has
// already exited.
static bool nothing_else_runs(const pid_t* excluded, size_t excluded_count) {
  pid_t tasks[64];
  const size_t listed = list_threads(getpid(), tasks, 64);
  if (listed > 64) return false;
  const pid_t self = current_tid();
  for (size_t i = 0; i < listed; ++i) {
    const pid_t tid = tasks[i];
    if (tid == self || contains_tid(excluded, excluded_count, tid)) continue;
    if (!alloc::thread_has_exited(getpid(), tid)) return false;
  }
  return true;
}

bool WorldStop::stop(StoppedThread* slots, size_t capacity, const pid_t* excluded, size_t excluded_count, size_t& count,
                     char* failure, size_t failure_size) {
  stopped_ = false;
  timed_out_ = false;
  read_stop_method_setting();
  count = 0;
  if (nothing_else_runs(excluded, excluded_count)) {
    // A single-threaded program (most short processes at their exit scan): nothing to stop, and
    // no tracer to start. Nothing can appear meanwhile: only a running thread could create one.
    method_ = g_signal_mode.load(std::memory_order_acquire) ? StopMethod::kSignals : StopMethod::kPtrace;
    return true;
  }
  if (!g_signal_mode.load(std::memory_order_acquire)) {
    const char* reason = reason_to_avoid_ptrace();
    if (reason[0] != '\0') {
      alloc::DiagnosticLine()
          .text("scans stop threads with signals, not ptrace, because ")
          .text(reason)
          .text("; blocking calls the program makes outside libc's wrappers may be interrupted")
          .emit();
      enter_signal_mode();
    }
  }
  if (!g_signal_mode.load(std::memory_order_acquire)) {
    method_ = StopMethod::kPtrace;
    const PtraceOutcome outcome = ptrace_stop(slots, capacity, excluded, excluded_count, count, failure, failure_size);
    if (outcome == PtraceOutcome::kStopped) {
      stopped_ = true;
      return true;
    }
    timed_out_ = outcome == PtraceOutcome::kTimedOut;
    if (timed_out_) return false;
    // A tracer killed by a signal (a seccomp filter's SIGSYS, say) will die again: fall back.
    if (outcome == PtraceOutcome::kFailed && std::strstr(failure, "tracer task died (signal") == nullptr) return false;
    alloc::DiagnosticLine()
        .text("scans stop threads with signals from now on, because ptrace is refused here (")
        .text(failure)
        .text("); blocking calls the program makes outside libc's wrappers may be interrupted")
        .emit();
    enter_signal_mode();
    failure[0] = '\0';
  }
  method_ = StopMethod::kSignals;
  if (!install_suspend_handler()) {
    std::snprintf(failure, failure_size, "could not install the suspend signal handler");
    return false;
  }
  return stop_with_signals(slots, capacity, excluded, excluded_count, count, failure, failure_size);
}

bool WorldStop::stop_with_signals(StoppedThread* slots, size_t capacity, const pid_t* excluded, size_t excluded_count,
                                  size_t& count, char* failure, size_t failure_size) {
  count = 0;
  slots_ = slots;
  count_ = 0;
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
    const size_t listed = list_threads(getpid(), tasks, 4096);
    if (listed > 4096) {
      std::snprintf(failure, failure_size, "more than 4096 threads");
      resume();
      return false;
    }
    size_t added = 0;
    for (size_t i = 0; i < listed; ++i) {
      const pid_t tid = tasks[i];
      if (tid == self || contains_tid(excluded, excluded_count, tid)) continue;
      bool known = false;
      for (size_t j = 0; j < count && !known; ++j) known = slots[j].tid == tid || slots[j].tid == -tid;
      if (known) continue;
      if (count >= capacity) {
        std::snprintf(failure, failure_size, "more threads than the scan can track");
        resume();
        return false;
      }
      StoppedThread& slot = slots[count];
      std::memset(&slot, 0, sizeof(slot));
      slot.tid = tid;
      ++count;
      count_ = count;
      ++added;
      // A thread asleep in a wrapped blocking call stays asleep (a signal would cut it short).
      alloc::ThreadState* state = thread_state_of(tid);
      if (state != nullptr && try_park(state->blocking_call)) {
        if (parked_thread_settles(getpid(), tid, state->blocking_call, kParkPatienceNs)) {
          slot.parked = true;
          take_parked_registers(slot, state->blocking_call);
          slot.acknowledged_epoch = epoch_;
          continue;
        }
        unpark(state->blocking_call);
      }
      g_slot_count.store(count, std::memory_order_release);  // the handler looks its slot up by tid
      // Gone, or a zombie (the main thread after pthread_exit) that would never answer.
      if (alloc::thread_has_exited(getpid(), tid) || !send_suspend_signal(tid)) slot.tid = -tid;
    }
    // Wait for every signalled thread; one that is gone counts as done.
    const uint64_t waiting_since = monotonic_ns();
    const uint64_t deadline = waiting_since + 3'000'000'000ull;
    const uint64_t patience = waiting_since + 20'000'000ull;  // after this, /proc is read for exits
    for (;;) {
      size_t waiting = 0;
      pid_t stuck = 0;
      for (size_t i = 0; i < count; ++i) {
        StoppedThread& s = slots[i];
        if (s.tid <= 0 || __atomic_load_n(&s.acknowledged_epoch, __ATOMIC_ACQUIRE) == epoch_) continue;
        // One of heapkeeper's own threads that had not yet flagged itself when listed (one a fork's
        // child handler just started): it blocks every signal, and is no root anyway.
        // (Kept listed, so the next listing knows it; no registers, no stack: no root.)
        if (const alloc::ThreadState* own = thread_state_of(s.tid); own != nullptr && own->heapkeeper_thread) {
          s.register_count = 0;
          s.stack_pointer = 0;
          __atomic_store_n(&s.acknowledged_epoch, epoch_, __ATOMIC_RELEASE);
          continue;
        }
        if (!thread_exists(s.tid) || (monotonic_ns() > patience && alloc::thread_has_exited(getpid(), s.tid))) {
          s.tid = -s.tid;  // exited meanwhile (a zombie still accepts signals, and ignores them)
          continue;
        }
        ++waiting;
        stuck = s.tid;
      }
      if (waiting == 0) break;
      if (monotonic_ns() > deadline) {
        std::snprintf(failure, failure_size,
                      "thread %d did not stop within 3 s: it blocks SIGPWR (raw rt_sigprocmask?) or is stuck in "
                      "the kernel",
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
  if (method_ == StopMethod::kPtrace) {
    ptrace_resume();
    return;
  }
  g_slot_count.store(0, std::memory_order_release);
  g_slots.store(nullptr, std::memory_order_release);
  g_resume_epoch.store(epoch_, std::memory_order_release);
  futex_wake_all(&g_resume_epoch);
  for (size_t i = 0; i < count_; ++i) {
    if (!slots_[i].parked) continue;
    if (alloc::ThreadState* state = thread_state_of(slots_[i].tid)) unpark(state->blocking_call);
  }
}

void take_parked_registers(StoppedThread& slot, const alloc::BlockingCallRecord& record) {
  for (int i = 0; i < 7; ++i) slot.registers[i] = record.registers[i];
  slot.register_count = 6;  // rbx rbp r12-r15; [6] is the stack pointer
  slot.stack_pointer = static_cast<uintptr_t>(record.registers[6]);
}

bool contains_tid(const pid_t* list, size_t count, pid_t tid) {
  for (size_t i = 0; i < count; ++i) {
    if (list[i] == tid) return true;
  }
  return false;
}

// The thread ids of process `pid`, with raw system calls. Returns how many (may exceed capacity).
size_t list_threads(pid_t pid, pid_t* out, size_t capacity) {
  char path[64];
  alloc::proc_task_path(path, pid, 0, "");
  size_t count = 0;
  alloc::for_each_numbered_entry(path, [&](long, const char*, long tid) {
    if (count < capacity) out[count] = static_cast<pid_t>(tid);
    ++count;
  });
  return count;
}

}  // namespace heapkeeper::collect
