// Forks that leave jemalloc's fork handlers out (see quiet_fork.h).
#include "allocator/quiet_fork.h"

#include <sched.h>
#include <sys/syscall.h>

#include <atomic>
#include <ctime>

#include "allocator/raw_syscall.h"
#include "allocator/syscall_filter.h"
#include "allocator/thread_registry.h"

// jemalloc's per-thread state (a type this file never looks into), which Debian's build keeps in
// initial-exec TLS, and its fork-child step for the list of those states.
extern "C" {
struct tsd_s;
extern __thread tsd_s je_tsd_tls __attribute__((tls_model("initial-exec")));
void je_tsd_postfork_child(tsd_s* tsd);
}

namespace heapkeeper::alloc {
namespace {

std::atomic<bool> g_quiet_fork{false};  // a quiet fork is under way: parked threads stay parked
std::atomic<bool> g_memory_shared{false};

// Whether every task of the process but `self` is a parked thread of heapkeeper's, as the kernel
// lists them. Any doubt (a listing that fails or misses the caller, an unknown task) is a no.
bool others_all_parked(pid_t self) {
  bool self_seen = false, all_parked = true;
  const bool listed = for_each_numbered_entry("/proc/self/task", [&](long, const char*, long tid) {
    if (tid == self) {
      self_seen = true;
      return;
    }
    bool parked = false;
    thread_registry().for_each_active([&](const ThreadState& s) {
      parked = parked || (s.tid == tid && s.heapkeeper_thread && s.parked.load(std::memory_order_seq_cst));
    });
    all_parked = all_parked && parked;
  });
  return listed && self_seen && all_parked;
}

}  // namespace

void park_internal_thread() noexcept {
  ThreadState* self = tls_thread.state;
  if (self != nullptr) self->parked.store(true, std::memory_order_seq_cst);
}

void unpark_internal_thread() noexcept {
  ThreadState* self = tls_thread.state;
  if (self == nullptr) return;
  for (;;) {
    // A fork lasts a millisecond or so: yield, then sleep in steps of 50 us.
    for (unsigned spins = 0; g_quiet_fork.load(std::memory_order_seq_cst); ++spins) {
      if (spins < 64) {
        sched_yield();
      } else {
        timespec pause{0, 50'000};
        raw_syscall(SYS_nanosleep, reinterpret_cast<long>(&pause), 0);
      }
    }
    self->parked.store(false, std::memory_order_seq_cst);
    if (!g_quiet_fork.load(std::memory_order_seq_cst)) return;
    self->parked.store(true, std::memory_order_seq_cst);  // the fork saw it parked: it stays so
  }
}

void note_memory_sharing_child() noexcept { g_memory_shared.store(true, std::memory_order_release); }

bool begin_quiet_fork() noexcept {
  const ThreadLocal& tl = tls_thread;
  // A signal handler's fork that interrupted this thread inside jemalloc: its locks are not free.
  if (tl.in_jemalloc != 0 || g_memory_shared.load(std::memory_order_acquire)) return false;
  // Another thread of the program's counted by heapkeeper's wrappers: no need to list.
  if (thread_registry().live_program_threads() > 1) return false;
  // The caller must be the registered thread whose state it runs on: a vfork child (or another
  // CLONE_VM task) runs on its parent's thread state and memory, and its /proc/self/task lists
  // itself alone, not the parent's threads, which may hold jemalloc's locks (a fork inside a vfork
  // child made a grandchild that inherited the live-stats thread's hold of jemalloc's ctl lock).
  const auto self = static_cast<pid_t>(raw_syscall(SYS_gettid));
  if (tl.state == nullptr || tl.state->tid != self) return false;
  if (syscall_filter_installed() || !syscall_filter_known_absent()) return false;
  g_quiet_fork.store(true, std::memory_order_seq_cst);
  if (others_all_parked(self)) return true;
  g_quiet_fork.store(false, std::memory_order_seq_cst);
  return false;
}

void end_quiet_fork_in_parent() noexcept { g_quiet_fork.store(false, std::memory_order_seq_cst); }

void end_quiet_fork_in_child() noexcept {
  // jemalloc's list of per-thread states still holds those of the parent's other threads (its
  // tsd_postfork_child, which its handler would have run, keeps the caller's alone).
  je_tsd_postfork_child(&je_tsd_tls);
  g_quiet_fork.store(false, std::memory_order_relaxed);
}

}  // namespace heapkeeper::alloc
