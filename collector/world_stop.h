// Stopping every thread of the process for a scan, with signals rather than ptrace.
//
// LeakSanitizer stops threads with ptrace from a forked tracer, which fails in containers and under
// Yama. heapkeeper sends each thread listed in /proc/self/task (except its own threads) the
// suspend signal (SIGPWR, as Boehm GC does on Linux); the handler stores the interrupted registers
// and stack pointer in that thread's slot, acknowledges through a futex and waits until the scan
// is over. Threads blocked in a system call are interrupted and their call restarted afterwards
// (SA_RESTART).
//
// Every task is stopped, registered with heapkeeper or not: a thread that is just starting (not yet
// registered) or already tearing itself down (pthread-key destructors, TLS release) still runs
// code that allocates, frees and unmaps, and must not do so under the marker. Threads created
// while stopping are caught by listing the tasks again until no new one appears. A thread that
// does not acknowledge within the timeout is dropped if it has gone, and otherwise makes the scan
// give up and resume everyone — never hang. Allocating threads are stopped wherever they are, even
// inside jemalloc holding its locks: the scanner never allocates while the world is stopped.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace heapkeeper::collect {

inline constexpr int kSuspendSignal = 30;  // SIGPWR on x86-64 Linux

struct StoppedThread {
  pid_t tid;
  uint32_t acknowledged_epoch;
  uintptr_t stack_pointer;
  uint64_t registers[23];  // the ucontext's general registers
};

// Installs the suspend handler (once). False if it could not be installed.
bool install_suspend_handler();

// A thread that blocks the suspend signal could never be stopped, so heapkeeper's
// pthread_sigmask and sigprocmask remove it from the sets a program blocks (as Boehm GC does).
// Returns the set to pass on: `requested`, or a copy in `scratch` without the suspend signal.
const sigset_t* without_suspend_signal(int how, const sigset_t* requested, sigset_t* scratch);

class WorldStop {
 public:
  // Stops every thread except the caller and `excluded` tids (heapkeeper's own). `slots` is
  // caller-provided storage (mapped before, never allocated here). On failure everyone is resumed
  // and `failure` says why.
  bool stop(StoppedThread* slots, size_t capacity, const pid_t* excluded, size_t excluded_count, size_t& count,
            char* failure, size_t failure_size);
  void resume();

 private:
  uint32_t epoch_ = 0;
  bool stopped_ = false;
};

}  // namespace heapkeeper::collect
