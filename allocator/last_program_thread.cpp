// The watch for the program's last thread (see last_program_thread.h).
#include "allocator/last_program_thread.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <ctime>

#include "allocator/diagnostics.h"
#include "allocator/engine.h"
#include "allocator/engine_internal.h"
#include "allocator/syscall_filter.h"
#include "allocator/thread_registry.h"

namespace heapkeeper::alloc {
namespace {

std::atomic<bool> g_watching{false};

// The thread's state letter (R, S, Z...) from /proc/self/task/TID/stat; 0 if it is gone.
char state_of(const char* tid) {
  char path[64] = "/proc/self/task/";
  size_t length = sizeof("/proc/self/task/") - 1;
  for (const char* c = tid; *c != '\0' && length + 6 < sizeof(path); ++c) path[length++] = *c;
  for (const char* c = "/stat"; *c != '\0'; ++c) path[length++] = *c;
  path[length] = '\0';
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char text[512];
  const ssize_t n = ::read(fd, text, sizeof(text) - 1);
  ::close(fd);
  // "TID (COMM) STATE ...": COMM may hold ") ", so the last one counts.
  ssize_t state_at = -1;
  for (ssize_t i = 0; i + 2 < n; ++i) {
    if (text[i] == ')' && text[i + 1] == ' ') state_at = i + 2;
  }
  return state_at > 0 ? text[state_at] : '\0';
}

bool is_heapkeeper_thread(pid_t tid) {
  bool own = false;
  thread_registry().for_each_active([&](const ThreadState& s) {
    if (s.tid == tid && s.heapkeeper_thread) own = true;
  });
  return own;
}

// Whether a thread that is not heapkeeper's still runs (zombies and threads going away do not).
// True when /proc cannot say: the process is then left to end as it can.
bool program_thread_runs() {
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return true;
  bool runs = false;
  while (dirent* entry = readdir(tasks)) {
    if (entry->d_name[0] < '1' || entry->d_name[0] > '9') continue;
    const pid_t tid = static_cast<pid_t>(std::atol(entry->d_name));
    if (is_heapkeeper_thread(tid)) continue;
    const char state = state_of(entry->d_name);
    if (state != 0 && state != 'Z' && state != 'X') {
      runs = true;
      break;
    }
  }
  closedir(tasks);
  return runs;
}

void watch() {
  for (;;) {
    const timespec pause{0, 2'000'000};
    nanosleep(&pause, nullptr);
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
