// libunwind's signal blocks inside heapkeeper's own unwinds, done without system calls.
//
// libunwind blocks every signal around each look-up of a frame's unwind information (its
// dl_iterate_phdr, on each miss of its per-thread caches) and restores the mask after: two
// rt_sigprocmask system calls a look-up. A traced `python3 -c pass` made 20,500 of them, its
// small-live-set churn 31,000, sqlite3's workload 7,700: a microsecond each in a VM, some 10 ms of
// python3's 60 ms start. The block is there so that a signal handler which unwinds cannot
// re-enter the loader's module list mid-iteration; inside heapkeeper's capture nothing needs it:
//   - the loader's lock is recursive, and a handler of the program that interrupts the capture
//     and allocates is served without a stack capture (the guard is held), so it never re-enters
//     heapkeeper's unwind;
//   - under the signal fallback the suspend signal must stay deliverable there anyway
//     (collector/world_stop.h): a thread waiting for the loader lock a scan holds must stop;
//   - the program's own calls, from a handler or not, are never elided: only calls made from
//     libunwind's code while the guard is held are.
// A handler that interrupts the capture sees the signal delivered a few microseconds sooner than
// it would have been; its mask is what it set. A handler that itself unwinds with the same
// libunwind (one copy per process) runs its look-ups unblocked: they are reentrant but for a third
// signal nested inside them.
#pragma once

#include <signal.h>

#include <cstdint>

namespace heapkeeper::alloc {

// Finds libunwind's code. Called once at start, before the first unwind.
void locate_unwinder();

// For heapkeeper's sigprocmask, with the guard held on this thread: true when the call is
// libunwind's (its return address `caller` lies in libunwind's code), or is the restore of such a
// call. Then it is complete without a system call: the mask is left as it is, and `old`, when
// given, receives a marker that no mask the kernel reports holds (SIGKILL and SIGSTOP alone), by
// which the restore that follows is recognised even if libunwind's code does not make it itself.
bool elide_unwinder_mask_call(const sigset_t* set, sigset_t* old, uintptr_t caller);

}  // namespace heapkeeper::alloc
