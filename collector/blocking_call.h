// Blocking calls a scan must not interrupt, and how a scan leaves a thread inside one.
//
// Stopping a thread for a scan wakes it from an interruptible sleep. Most calls then restart
// transparently under ptrace (nanosleep, poll, select, futex...), but some return EINTR whatever
// the tracer does: epoll_wait, sigtimedwait, semop, and socket calls with SO_RCVTIMEO or
// SO_SNDTIMEO among them (and under the signal fallback, nanosleep and poll too), and a write to a
// full pipe or socket returns what it wrote so far, a short count. So heapkeeper wraps the program's blocking
// calls: the wrapper saves the callee-saved registers and the stack pointer in the thread's
// BlockingCallRecord and marks it kInCall. A scan that finds a thread kInCall, and the kernel
// agreeing that the thread sleeps in one of the call's system calls, moves it to kParked instead of
// stopping it: the call sleeps on undisturbed. If it returns while the world is stopped, the
// wrapper waits (futex) until the scan is over before the program sees the result, so the thread
// never runs program code under the marker. Its roots are the saved registers and its stack from
// the saved stack pointer up: the caller-saved registers are dead across a call by the ABI, and
// whatever libc's frames below hold was derived from the arguments, which the wrapper's frame holds.
//
// A signal delivered to a parked thread during a scan: under ptrace the thread is seized, so the
// signal stops it before its handler runs (delivered at resume); under the signal fallback the
// handler may run during the scan (documented limitation of the fallback).
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "allocator/thread_registry.h"

namespace heapkeeper::collect {

// kParkedReturned: the call returned while parked, and the wrapper waits for the scan's end (in
// heapkeeper's code, holding only the call's integer result): as safe to scan as kParked.
enum BlockingState : uint32_t { kRunning = 0, kInCall = 1, kParked = 2, kParkedReturned = 3 };

// Which wrapped call a thread is in: each kind lists the system calls libc may sleep in for it.
enum BlockingKind : uint32_t {
  kSleep = 1,  // sleep, usleep, nanosleep, clock_nanosleep
  kPoll,       // poll, ppoll
  kSelect,     // select, pselect
  kEpoll,      // epoll_wait, epoll_pwait, epoll_pwait2
  kSigwait,    // sigtimedwait, sigwaitinfo
  kRead,       // read, readv
  kReceive,    // recv, recvfrom, recvmsg, recvmmsg
  kAccept,     // accept, accept4
  kSend,       // write, writev, send, sendto, sendmsg, sendmmsg: a full pipe or socket
  kSemaphore,  // semop, semtimedop
  kConnect,    // connect: a listener's full backlog, with SO_SNDTIMEO (EINTR after a stop otherwise)
  kAio,        // io_getevents (libaio's, which a program links; the kernel's EINTR after a stop)
};

// True if `syscall_number` is one the wrapped call of `kind` may be sleeping in.
bool blocking_kind_allows(uint32_t kind, long syscall_number);

// Saves rbx, rbp, r12-r15 and the stack pointer of the caller into out[0..6] (assembly: nothing
// in between may have changed them).
extern "C" void heapkeeper_save_callee_saved(uint64_t* out);

alloc::BlockingCallRecord* enter_blocking_call(uint32_t kind) noexcept;
void leave_blocking_call(alloc::BlockingCallRecord* record) noexcept;
// A longjmp about to land at `target_stack_pointer` (the jmp_buf's): if that is above the
// outermost wrapped call's frame, the jump leaves the call without its wrapper returning (a
// SIGALRM handler's siglongjmp out of a read, the classic timeout), so the call ends here, as
// leave_blocking_call ends it. Otherwise the record would say "in a call" with a dead frame's
// registers and stack pointer for ever, and a scan would park the thread with them.
void leave_blocking_calls_below(uintptr_t target_stack_pointer) noexcept;

// Wraps one blocking call of the program; must be constructed in the exported wrapper's own frame
// (it is inline so that the registers and stack pointer saved are the wrapper's caller's).
class BlockingCallScope {
 public:
  explicit BlockingCallScope(uint32_t kind) noexcept : record_(enter_blocking_call(kind)) {
    if (record_ != nullptr && record_->depth == 1) {
      heapkeeper_save_callee_saved(record_->registers);
      __atomic_store_n(reinterpret_cast<uint32_t*>(&record_->state), kInCall, __ATOMIC_RELEASE);
    }
  }
  ~BlockingCallScope() { leave_blocking_call(record_); }
  BlockingCallScope(const BlockingCallScope&) = delete;
  BlockingCallScope& operator=(const BlockingCallScope&) = delete;

 private:
  alloc::BlockingCallRecord* record_;
};

// For the world stop: parks the thread if it is in a wrapped call (kInCall -> kParked); false if
// it is not. The caller must then confirm with the kernel (parked_thread_is_asleep) or unpark.
bool try_park(alloc::BlockingCallRecord& record);
// Reads /proc/<pid>/task/<tid>/syscall: true if the thread sleeps in a system call its record's
// kind allows (so it cannot run program code before the wrapper sees kParked). Raw syscalls only.
bool parked_thread_is_asleep(pid_t pid, pid_t tid, const alloc::BlockingCallRecord& record);
// A parked thread may not be asleep yet: between the wrapper's entry and the kernel, a thread
// descheduled on a loaded machine can stay for milliseconds, and stopping it then (a signal, or
// ptrace's interrupt for epoll_wait and SO_RCVTIMEO sockets) makes its call fail with EINTR. So
// this waits up to `patience_ns` for the thread to fall asleep in the call (or to have returned and
// wait for the scan's end). True if it did: the thread stays parked. Raw syscalls only.
bool parked_thread_settles(pid_t pid, pid_t tid, const alloc::BlockingCallRecord& record, long patience_ns);
inline constexpr long kParkPatienceNs = 5'000'000;
void unpark(alloc::BlockingCallRecord& record);

// The registered state of thread `tid`, or null (registry walk; no locks, no allocation).
alloc::ThreadState* thread_state_of(pid_t tid);

}  // namespace heapkeeper::collect
