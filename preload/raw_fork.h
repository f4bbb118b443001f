// Forks made without fork(): the clone system call through syscall() (Chromium's ForkWithFlags,
// which its zygote uses for every child; sandboxes that start a child in new namespaces), clone3,
// a raw SYS_fork, and glibc's clone() without CLONE_VM. glibc runs no fork handlers for them, so
// a child made while a heapkeeper thread held a lock inherited it held: the scanner's hold of the
// dynamic loader's lock during a scan, jemalloc's arena locks. The child hung at its first
// allocation that unwound (40 raw-clone children in 300 with 5 ms scans; Chromium's zygote child
// never answered its ping). heapkeeper runs its own fork handlers and jemalloc's around such a
// clone, in fork()'s order, and none of the program's: it asked for no fork handlers.
#pragma once

#include <cerrno>

#include "allocator/engine.h"
#include "allocator/thread_registry.h"
#include "collector/collector.h"

namespace heapkeeper::preload {

// A clone that copies the process as fork() does: neither CLONE_VM nor CLONE_THREAD, and on the
// parent's stack (a new stack without CLONE_VM is the libc clone()'s, handled there).
inline bool copies_process(unsigned long long flags) { return (flags & (0x00000100ULL | 0x00010000ULL)) == 0; }

// Whether the calling thread is the program's (heapkeeper's own clones are left as they are).
inline bool program_call() {
  const alloc::ThreadLocal& thread = alloc::tls_thread;
  return thread.guard == 0 && (thread.state == nullptr || !thread.state->heapkeeper_thread);
}

// Runs `make_child` (the clone: the child's pid in the parent, 0 in the child, -1 on failure)
// between what fork()'s handlers do. `in_child`: the child runs elsewhere (clone()'s function),
// which calls alloc::after_raw_fork_in_child itself when `prepared` says so.
template <typename MakeChild>
long fork_like(MakeChild&& make_child, bool* prepared_out = nullptr) {
  const bool held = collect::hold_scans_for_raw_fork();
  const bool prepared = alloc::prepare_raw_fork();
  if (prepared_out != nullptr) *prepared_out = prepared;
  const long pid = make_child(prepared);
  const int saved_errno = errno;
  if (pid == 0) {
    if (prepared) alloc::after_raw_fork_in_child();
  } else {
    if (prepared) alloc::after_raw_fork_in_parent();
    collect::allow_scans_after_raw_fork_in_parent(held);
  }
  errno = saved_errno;
  return pid;
}

}  // namespace heapkeeper::preload
