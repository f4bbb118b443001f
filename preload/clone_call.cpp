// glibc's clone(), for the children that share the program's memory without being its threads
// (CLONE_VM without CLONE_THREAD; collector/memory_sharing_tasks.h): a scan cannot stop or read
// them, so they are noted and scans give no verdict while they share it. The child is made by the
// original clone, with every argument as given; only the parent's side is watched, under a hold of
// scans (collector.h) so that none runs between the child's start and its noting. A vfork-style
// clone (CLONE_VFORK) returns only once the child has exec'd or ended: held for that long, nothing
// to note after.
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>

#include "allocator/quiet_fork.h"
#include "allocator/thread_registry.h"
#include "collector/collector.h"
#include "collector/memory_sharing_tasks.h"
#include "preload/original_functions.h"
#include "preload/raw_fork.h"

#define HK_EXPORT extern "C" __attribute__((visibility("default")))

namespace {
using CloneFunction = int (*)(int (*)(void*), void*, int, void*, ...);
std::atomic<CloneFunction> g_original_clone{nullptr};

// The child of a clone that copies the process: fork()'s child handlers, then the program's function.
// `start` is in the parent's frame, which the child has a copy of.
struct ForkedStart {
  int (*function)(void*);
  void* argument;
};
// When the function returns, glibc ends the child's thread (exit, not exit_group), which ended the
// child when it was its only thread; heapkeeper's threads in it (a scanner started after the clone)
// kept it alive, a zombie thread beside them, and the parent's wait hung. So the last of the
// program's threads ends the process, as the kernel would have, through _exit (its live-stats
// segment removed); a child that made threads of its own keeps glibc's way.
int start_forked_child(void* raw) {
  const ForkedStart start = *static_cast<ForkedStart*>(raw);
  heapkeeper::alloc::after_raw_fork_in_child();
  const int status = start.function(start.argument);
  if (heapkeeper::alloc::thread_registry().live_program_threads() <= 1) _exit(status);
  return status;
}
}  // namespace

// The three optional arguments are read whatever the flags (glibc's clone reads the registers that
// carry them the same way) and passed on.
HK_EXPORT int clone(int (*function)(void*), void* stack, int flags, void* argument, ...) {
  va_list list;
  va_start(list, argument);
  auto* parent_tid = va_arg(list, pid_t*);
  void* tls = va_arg(list, void*);
  auto* child_tid = va_arg(list, pid_t*);
  va_end(list);
  const CloneFunction original = heapkeeper::preload::cached_next_symbol(g_original_clone, "clone");
  if (original == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  // heapkeeper's own children (a scan's tracer task, the report hand-off's) are not the program's:
  // noted, the tracer made every later scan wait on it (a hang in integration.transparent_scans).
  const heapkeeper::alloc::ThreadLocal& thread = heapkeeper::alloc::tls_thread;
  const bool own = thread.guard != 0 || (thread.state != nullptr && thread.state->heapkeeper_thread);
  const bool shares_memory = (flags & CLONE_VM) != 0 && (flags & CLONE_THREAD) == 0;
  // A copy of the process (preload/raw_fork.h): the child starts in `function` on `stack`, and
  // takes what fork()'s child handlers do there first.
  if (!own && heapkeeper::preload::copies_process(static_cast<unsigned>(flags))) {
    ForkedStart start{function, argument};
    return static_cast<int>(heapkeeper::preload::fork_like([&](bool prepared) {
      return original(prepared ? start_forked_child : function, stack, flags, prepared ? &start : argument, parent_tid,
                      tls, child_tid);
    }));
  }
  if (!shares_memory || own) return original(function, stack, flags, argument, parent_tid, tls, child_tid);
  const bool held = heapkeeper::collect::hold_scans_for_exec();
  const int pid = original(function, stack, flags, argument, parent_tid, tls, child_tid);
  const int saved_errno = errno;
  if (pid > 0 && (flags & CLONE_VFORK) == 0) {
    heapkeeper::collect::note_memory_sharing_task(pid);
    heapkeeper::alloc::note_memory_sharing_child();  // it may allocate while the program forks
  }
  heapkeeper::collect::allow_scans_after_exec(held);
  errno = saved_errno;
  return pid;
}
