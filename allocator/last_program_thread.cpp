// The watch for the program's last thread (see last_program_thread.h).
#include "allocator/last_program_thread.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <ctime>

#include "allocator/engine.h"
#include "allocator/raw_syscall.h"
#include "allocator/syscall_filter.h"
#include "allocator/thread_credentials.h"
#include "allocator/thread_registry.h"

namespace heapkeeper::alloc {
namespace {

std::atomic<bool> g_watching{false};

// Whether a thread that is not heapkeeper's still runs (zombies and threads going away do not).
// True when /proc cannot say: the process is then left to end as it can.
bool program_thread_runs() {
  const long pid = getpid();
  bool runs = false;
  const bool listed = for_each_numbered_entry("/proc/self/task", [&](long, const char*, long tid) {
    if (!runs && !thread_registry().is_heapkeeper_thread(static_cast<pid_t>(tid))) runs = !thread_has_exited(pid, tid);
  });
  return runs || !listed;
}

void watch() {
  for (;;) {
    // Never paused: a pause needs a program thread, and none is left when this watch runs.
    (void)internal_sleep_ms(2);
    if (thread_registry().live_program_threads() > 0) break;  // the program made a thread meanwhile
    if (program_thread_runs()) continue;
    g_watching.store(false, std::memory_order_release);
    // The exit handlers (the program's, and heapkeeper's leak check) run on this thread as they
    // would have on the last one: as a thread of the program's (its allocations tracked, with its
    // own stack cache and tracked arena), without the guard heapkeeper's threads hold for life.
    // As heapkeeper's, a handler's allocations went uncounted and its leaks unreported.
    thread_registry().retire_current();
    thread_registry().register_current(false);
    tls_thread.guard = 0;
    tls_thread.internal_level = 0;
    exit(0);
  }
  g_watching.store(false, std::memory_order_release);
}

}  // namespace

void watch_for_last_program_thread() noexcept {
  // Under a seccomp filter the watch's reads of /proc may be what it kills for: the process then
  // ends at once, as before heapkeeper counted threads made without its hook.
  if (syscall_filter_installed()) exit(0);
  bool expected = false;
  if (!g_watching.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) return;
  if (!start_internal_thread(watch, "heapkeeper-last")) {
    g_watching.store(false, std::memory_order_release);
    exit(0);  // no watcher: what the count says, rather than a process that never ends
  }
}

}  // namespace heapkeeper::alloc
