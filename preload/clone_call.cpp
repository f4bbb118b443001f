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

#include <atomic>

#include "allocator/thread_registry.h"
#include "collector/collector.h"
#include "collector/memory_sharing_tasks.h"
#include "preload/original_functions.h"

#define HK_EXPORT extern "C" __attribute__((visibility("default")))

namespace {
using CloneFunction = int (*)(int (*)(void*), void*, int, void*, ...);
std::atomic<CloneFunction> g_original_clone{nullptr};
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
  if (!shares_memory || own) return original(function, stack, flags, argument, parent_tid, tls, child_tid);
  const bool held = heapkeeper::collect::hold_scans_for_exec();
  const int pid = original(function, stack, flags, argument, parent_tid, tls, child_tid);
  const int saved_errno = errno;
  if (pid > 0 && (flags & CLONE_VFORK) == 0) heapkeeper::collect::note_memory_sharing_task(pid);
  heapkeeper::collect::allow_scans_after_exec(held);
  errno = saved_errno;
  return pid;
}
