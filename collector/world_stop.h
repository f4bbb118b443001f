// Stopping every program thread for a scan, with signals rather than ptrace.
//
// LeakSanitizer stops threads with ptrace from a forked tracer, which fails in containers and under
// Yama. heapkeeper sends each registered thread the suspend signal (SIGPWR, as Boehm GC does on
// Linux); its handler stores the interrupted registers and stack pointer in the thread's state,
// acknowledges through a futex and waits until the scan is over. Threads blocked in a system call
// are interrupted and their call restarted afterwards (SA_RESTART). A thread that does not
// acknowledge within the timeout is checked: gone threads are skipped, a live one that will not
// stop (it blocks the signal) makes the scan give up and resume everyone, never hang.
//
// Allocating threads are stopped wherever they are, even inside jemalloc holding its locks: the
// scanner therefore never allocates while the world is stopped (scan buffers are mmap'd).
#pragma once

#include <signal.h>

#include <cstddef>
#include <cstdint>

namespace heapkeeper::alloc {
struct ThreadState;
}

namespace heapkeeper::collect {

inline constexpr int kSuspendSignal = 30;  // SIGPWR on x86-64 Linux

// Installs the suspend handler (once). False if it could not be installed.
bool install_suspend_handler();

// A thread that blocks the suspend signal could never be stopped, so heapkeeper's
// pthread_sigmask and sigprocmask remove it from the sets a program blocks (as Boehm GC does).
// Returns the set to pass on: `requested`, or a copy in `scratch` without the suspend signal.
const sigset_t* without_suspend_signal(int how, const sigset_t* requested, sigset_t* scratch);

class WorldStop {
 public:
  // Stops all registered program threads except the calling one. `stopped` receives their states
  // (capacity entries). On failure, everyone is resumed and `failure` explains why.
  bool stop(alloc::ThreadState** stopped, size_t capacity, size_t& count, char* failure, size_t failure_size);
  void resume();

 private:
  uint32_t epoch_ = 0;
  bool stopped_ = false;
};

}  // namespace heapkeeper::collect
