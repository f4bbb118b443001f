// Stopping every thread of the process for a scan, and resuming it.
//
// The method is ptrace (ptrace_stop.h): interrupted system calls restart transparently, and no
// signal or handler of the program's is touched. Threads inside a wrapped blocking call are left
// asleep (blocking_call.h). Where ptrace is refused (Yama scope 3, seccomp, a process already
// traced or not dumpable) heapkeeper falls back, once and for the rest of the process, to signals,
// and says so in one line: each thread listed in /proc/self/task (except heapkeeper's own) gets
// the suspend signal (SIGPWR, as Boehm GC uses on Linux); the handler stores the interrupted
// registers in the thread's slot, acknowledges through a futex and waits until the scan is over.
// Under signals, calls a handler interrupts may return EINTR (nanosleep, poll...), which is why
// the program's blocking calls are wrapped. The program's own SIGPWR handler keeps working: the
// suspend handler passes on every SIGPWR that is not a scan's, and a disposition the program set
// is re-checked before each scan.
//
// Every task is stopped, registered with heapkeeper or not: a thread that is just starting or
// already tearing itself down still runs code that allocates, frees and unmaps. Threads created
// while stopping are caught by listing the tasks again until no new one appears. A thread that
// does not stop within the timeout makes the scan give up and resume everyone — never hang.
// Allocating threads are stopped wherever they are, even inside jemalloc holding its locks: the
// scanner never allocates while the world is stopped.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "allocator/thread_registry.h"
#include "report/register_words.h"

namespace heapkeeper::collect {

inline constexpr int kSuspendSignal = 30;  // SIGPWR on x86-64 Linux

struct StoppedThread {
  pid_t tid;  // negative: listed, but gone (or a zombie) before it could be stopped
  uint32_t acknowledged_epoch;
  uintptr_t stack_pointer;
  bool seized;  // ptrace: attached
  bool parked;  // left asleep in a wrapped blocking call: its stack is a root from stack_pointer
  uint32_t register_count;
  // The general registers, then the vector registers (report/register_words.h has the order):
  // compilers keep pointers there too (a spill to an SSE register, a 16-byte move of two pointers,
  // four in a ymm register under -mavx2), glibc's memcpy moves data through ymm registers, and a
  // block referenced only from one while its thread is stopped must not look unreachable. Sized
  // for AVX-512; register_count stops where the machine's registers do. 2.2 KiB a thread: the slots
  // live in the scan's mapped buffers (root_scan.cpp), only the stopped threads' pages touched.
  uint64_t registers[report::kRegisterWords];
};

enum class StopMethod { kPtrace, kSignals };
const char* stop_method_name(StopMethod method);

// Installs the suspend handler, chaining the program's own (signal fallback only). False if it
// could not be installed.
bool install_suspend_handler();

// Under the signal fallback, a thread that blocks the suspend signal could never be stopped, so
// heapkeeper's pthread_sigmask and sigprocmask remove it from the sets a program blocks (as Boehm GC
// does). Under ptrace (the default) masks are left exactly as the program asks.
// Returns the set to pass on: `requested`, or a copy in `scratch` without the suspend signal.
// The fallback is foreseen when the program first blocks SIGPWR (HEAPKEEPER_STOP_METHOD, a seccomp
// filter or a tracer it already has), so that masks a daemon sets at start keep SIGPWR deliverable
// too. heapkeeper's own calls (under the guard) pass unchanged. The signalfd wrapper uses it too: a
// signalfd reads the thread's pending signals, blocked or not, and could take a scan's SIGPWR.
// Returns the set to pass on: `requested`, or a copy in `scratch` without the suspend signal.
// `saves_old`: the caller asked for the previous mask too (libunwind's block around an unwind
// step does; its restore does not), which lets heapkeeper's own full block keep SIGPWR
// deliverable under the fallback (see the definition).
const sigset_t* without_suspend_signal(int how, const sigset_t* requested, sigset_t* scratch, bool saves_old = false);
// Decides, once, whether scans will stop threads with signals, from what is known without trying
// ptrace (the setting, a seccomp filter, a tracer). A scan asks before it takes the dynamic
// loader's lock (see scan_heap).
void foresee_stop_method();
// Falls back to signals from now on, before the scan would find out: the program is installing a
// seccomp filter. The calling thread's mask stops blocking SIGPWR (those of others cannot be
// reached: a thread that blocked it earlier cannot be stopped, and its scan is skipped).
void fall_back_to_signals_now();
// Before an exec, with scans held off (collector.h hold_scans_for_exec): a scan's signal still
// pending on this thread (blocked until the scan gave up on it) would outlive the exec, which resets
// the handler, and kill the new image (pending signals and the mask survive exec). Taken here; a
// SIGPWR of the program's own taken with it is queued back. Raw system calls only.
void drop_pending_suspend_signal();

// The thread ids of process `pid` from /proc/PID/task, with raw system calls (safe on the tracer
// task and with part of the world stopped). Returns how many (may exceed capacity).
size_t list_threads(pid_t pid, pid_t* out, size_t capacity);
bool contains_tid(const pid_t* list, size_t count, pid_t tid);
// A thread left asleep in a wrapped blocking call: its saved registers and stack pointer.
void take_parked_registers(StoppedThread& slot, const alloc::BlockingCallRecord& record);

class WorldStop {
 public:
  // Stops every thread except the caller and `excluded` tids (heapkeeper's own). `slots` is
  // caller-provided storage (mapped before, never allocated here). On failure everyone is resumed
  // and `failure` says why.
  bool stop(StoppedThread* slots, size_t capacity, const pid_t* excluded, size_t excluded_count, size_t& count,
            char* failure, size_t failure_size);
  void resume();
  StopMethod method() const { return method_; }
  // Whether the last stop() failed only because ptrace's deadline passed: a transient failure on a
  // starved machine, worth trying again, unlike a refusal or the signal fallback's blocked SIGPWR.
  bool timed_out() const { return timed_out_; }

 private:
  bool stop_with_signals(StoppedThread* slots, size_t capacity, const pid_t* excluded, size_t excluded_count,
                         size_t& count, char* failure, size_t failure_size);
  uint32_t epoch_ = 0;
  bool stopped_ = false;
  bool timed_out_ = false;
  StopMethod method_ = StopMethod::kPtrace;
  StoppedThread* slots_ = nullptr;
  size_t count_ = 0;
};

}  // namespace heapkeeper::collect
