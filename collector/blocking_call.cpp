// The blocking-call protocol between wrapped calls and the world stop (see blocking_call.h).
#include "collector/blocking_call.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

#include "allocator/engine.h"
#include "allocator/raw_syscall.h"
#include "collector/os_primitives.h"

namespace heapkeeper::collect {

// rdi = out. The stack pointer stored is the caller's after this call returns (rsp + 8).
// In a section of its own, like the compiled functions, so that preload/start_path.ld can place it.
asm(R"(
  .pushsection .text.heapkeeper_save_callee_saved, "ax", @progbits
  .globl heapkeeper_save_callee_saved
  .hidden heapkeeper_save_callee_saved
  .type heapkeeper_save_callee_saved, @function
heapkeeper_save_callee_saved:
  movq %rbx, 0(%rdi)
  movq %rbp, 8(%rdi)
  movq %r12, 16(%rdi)
  movq %r13, 24(%rdi)
  movq %r14, 32(%rdi)
  movq %r15, 40(%rdi)
  leaq 8(%rsp), %rax
  movq %rax, 48(%rdi)
  ret
  .size heapkeeper_save_callee_saved, .-heapkeeper_save_callee_saved
  .popsection
)");

bool blocking_kind_allows(uint32_t kind, long nr) {
  switch (kind) {
    case kSleep:
      return nr == SYS_nanosleep || nr == SYS_clock_nanosleep;
    case kPoll:
      return nr == SYS_poll || nr == SYS_ppoll;
    case kSelect:
      return nr == SYS_select || nr == SYS_pselect6;
    case kEpoll:
      return nr == SYS_epoll_wait || nr == SYS_epoll_pwait || nr == 441 /* epoll_pwait2 */;
    case kSigwait:
      return nr == SYS_rt_sigtimedwait;
    case kRead:
      return nr == SYS_read || nr == SYS_readv;
    case kReceive:
      return nr == SYS_recvfrom || nr == SYS_recvmsg || nr == SYS_recvmmsg;
    case kAccept:
      return nr == SYS_accept || nr == SYS_accept4;
    case kSend:
      return nr == SYS_write || nr == SYS_writev || nr == SYS_sendto || nr == SYS_sendmsg || nr == SYS_sendmmsg;
    case kSemaphore:
      return nr == SYS_semop || nr == SYS_semtimedop;
    case kConnect:
      return nr == SYS_connect;
    case kAio:
      return nr == SYS_io_getevents || nr == SYS_io_pgetevents;
    default:
      return false;
  }
}

alloc::BlockingCallRecord* enter_blocking_call(uint32_t kind) noexcept {
  alloc::ThreadState* state = alloc::current_thread_state();
  if (state == nullptr || state->heapkeeper_thread) return nullptr;
  alloc::BlockingCallRecord& record = state->blocking_call;
  // A nested call (from a signal handler that interrupted the outer one) keeps the outer record:
  // it is far below the saved stack pointer, so parked_thread_is_asleep never parks it.
  if (++record.depth == 1) record.kind = kind;
  return &record;
}

void leave_blocking_call(alloc::BlockingCallRecord* record) noexcept {
  if (record == nullptr) return;
  if (--record->depth != 0) return;
  auto* word = reinterpret_cast<std::atomic<uint32_t>*>(&record->state);
  uint32_t expected = kInCall;
  if (word->compare_exchange_strong(expected, kRunning, std::memory_order_acq_rel)) return;
  // A signal handler that ran once the depth was 0 again made a wrapped call of its own, as the
  // outermost, and ended it (kRunning): this call has ended too. Waiting for kInCall here spun for
  // ever (a handler writing while the program writes, tests/programs/nested_blocking_call.c).
  if (expected == kRunning) return;
  // Parked by a scan that is still running: the program must not see the result before it ends.
  // Saying so (kParkedReturned) lets a scan still deciding whether to keep this thread parked know
  // that it is safely held here (parked_thread_settles).
  const int saved_errno = errno;
  for (;;) {
    expected = kInCall;
    if (word->compare_exchange_strong(expected, kRunning, std::memory_order_acq_rel) || expected == kRunning) break;
    if (expected == kParked) {
      if (!word->compare_exchange_strong(expected, kParkedReturned, std::memory_order_acq_rel)) continue;
      expected = kParkedReturned;
    }
    if (expected == kParkedReturned) futex_wait(word, kParkedReturned, 1000);
  }
  errno = saved_errno;
}

void leave_blocking_calls_below(uintptr_t target_stack_pointer) noexcept {
  // A thread inside a wrapped call has its state already: nothing to register (a jump is often
  // made from a signal handler).
  alloc::ThreadState* state = alloc::tls_thread.state;
  if (state == nullptr || state->heapkeeper_thread) return;
  alloc::BlockingCallRecord& record = state->blocking_call;
  // The saved stack pointer is the outermost wrapper's own (nested calls save none): a jump to a
  // frame of the handler itself lands below it, and leaves the outer call running.
  if (record.depth == 0 || target_stack_pointer <= record.registers[6]) return;
  record.depth = 1;
  leave_blocking_call(&record);
}

bool try_park(alloc::BlockingCallRecord& record) {
  auto* word = reinterpret_cast<std::atomic<uint32_t>*>(&record.state);
  uint32_t expected = kInCall;
  return word->compare_exchange_strong(expected, kParked, std::memory_order_acq_rel);
}

void unpark(alloc::BlockingCallRecord& record) {
  auto* word = reinterpret_cast<std::atomic<uint32_t>*>(&record.state);
  uint32_t expected = kParked;
  const bool released =
      word->compare_exchange_strong(expected, kInCall, std::memory_order_acq_rel) ||
      (expected == kParkedReturned && word->compare_exchange_strong(expected, kInCall, std::memory_order_acq_rel));
  if (released)
    alloc::raw_syscall(SYS_futex, reinterpret_cast<long>(word), FUTEX_WAKE_PRIVATE,
                       INT32_MAX);  // may run on the tracer
}

namespace {

constexpr uintptr_t kLibcFramesBytes = 1024;

}  // namespace

// A process that is not dumpable (setuid, or a privilege drop) cannot read its own
// /proc/.../syscall; its stat, world-readable, still says whether the thread sleeps in the kernel
// (S, D). Weaker than the system call check: a signal handler that interrupted the wrapped call
// and sleeps in another system call during the scan would pass it, and a pointer held only in that
// handler's frames would be missed. That needs a non-dumpable process, a handler running inside a
// wrapped call, and a scan at that moment.
static bool thread_sleeps_in_kernel(pid_t pid, pid_t tid) {
  const char state = alloc::thread_state_letter(pid, tid);
  return state == 'S' || state == 'D';
}

bool parked_thread_is_asleep(pid_t pid, pid_t tid, const alloc::BlockingCallRecord& record) {
  // Raw system calls: this may run on the tracer task, which shares the scanning thread's TLS
  // (errno included).
  char path[64];
  alloc::proc_task_path(path, pid, tid, "syscall");
  const long fd = alloc::raw_syscall(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path), O_RDONLY | O_CLOEXEC);
  if (fd == -EACCES || fd == -EPERM) return thread_sleeps_in_kernel(pid, tid);
  if (fd < 0) return false;
  char text[256];
  const long n = alloc::raw_syscall(SYS_read, fd, reinterpret_cast<long>(text), sizeof(text) - 1);
  alloc::raw_syscall(SYS_close, fd);
  if (n <= 0 || text[0] < '0' || text[0] > '9') return false;  // "running", or -1: not in a call
  text[n] = '\0';
  // "NR ARG1 ... ARG6 SP PC": the system call and the user stack pointer it was entered with.
  long number = 0;
  const char* q = text;
  for (; *q >= '0' && *q <= '9'; ++q) number = number * 10 + (*q - '0');
  if (!blocking_kind_allows(record.kind, number)) return false;
  uintptr_t sp = 0;
  for (int field = 0; field < 7; ++field) {
    while (*q == ' ') ++q;
    if (q[0] != '0' || q[1] != 'x') return false;
    q += 2;
    sp = 0;
    for (;; ++q) {
      const char c = *q;
      if (c >= '0' && c <= '9')
        sp = sp * 16 + static_cast<uintptr_t>(c - '0');
      else if (c >= 'a' && c <= 'f')
        sp = sp * 16 + static_cast<uintptr_t>(c - 'a' + 10);
      else
        break;
    }
  }
  // The call sleeps within libc's few frames below the wrapper. A signal handler that interrupted
  // the wrapped call and now sleeps in a system call of the same family would be at least a
  // signal frame (over 1.5 KiB on x86-64) further down, or on its alternate stack: not parked,
  // because its own frames and registers would not be scanned.
  const uintptr_t saved_sp = record.registers[6];
  return sp <= saved_sp && sp + kLibcFramesBytes >= saved_sp;
}

alloc::ThreadState* thread_state_of(pid_t tid) {
  alloc::ThreadState* found = nullptr;
  alloc::thread_registry().for_each_active([&](alloc::ThreadState& s) {
    if (s.tid == tid && found == nullptr) found = &s;
  });
  return found;
}

bool parked_thread_settles(pid_t pid, pid_t tid, const alloc::BlockingCallRecord& record, long patience_ns) {
  const auto now_ns = [] {
    timespec now;
    alloc::raw_syscall(SYS_clock_gettime, CLOCK_MONOTONIC, reinterpret_cast<long>(&now));
    return now.tv_sec * 1'000'000'000L + now.tv_nsec;
  };
  const long deadline = now_ns() + patience_ns;
  for (;;) {
    if (record.state.load(std::memory_order_acquire) == kParkedReturned) return true;
    if (parked_thread_is_asleep(pid, tid, record)) return true;
    if (now_ns() > deadline) return false;
    timespec pause{0, 100'000};
    alloc::raw_syscall(SYS_nanosleep, reinterpret_cast<long>(&pause), 0);
  }
}

}  // namespace heapkeeper::collect
