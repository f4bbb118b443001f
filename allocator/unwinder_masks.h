// libunwind's critical sections inside heapkeeper's own unwinds: their signal blocks, and forks.
//
// libunwind brackets each of its critical sections with a block of every signal and a restore of
// the saved mask (two rt_sigprocmask system calls): around its look-ups of a frame's unwind
// information (dl_iterate_phdr, on each miss of its per-thread caches), and around each of its
// own mutexes (lock_acquire: the pool its register states come from, its start-up). libunwind
// calls sigprocmask through its PLT, so heapkeeper's sigprocmask sees every one of them.
//
// The look-ups' blocks make no system call (elide_unwinder_mask_call). A traced `python3 -c pass`
// made 20,500 of them, its small-live-set churn 31,000, sqlite3's workload 7,700: a microsecond
// each in a VM, some 10 ms of python3's 60 ms start. That block is there so that a signal handler
// which unwinds cannot re-enter the loader's module list mid-iteration; inside heapkeeper's
// capture nothing needs it:
//   - the loader's lock is recursive, and a handler of the program that interrupts the capture
//     and allocates is served without a stack capture (the guard is held), so it never re-enters
//     heapkeeper's unwind; a handler that unwinds with the same libunwind (one copy per process: a
//     profiler's SIGPROF) re-enters a look-up, which is reentrant;
//   - under the signal fallback the suspend signal must stay deliverable there anyway
//     (collector/world_stop.h): a thread waiting for the loader lock a scan holds must stop;
//   - the program's own calls, from a handler or not, are never elided: only calls made from
//     libunwind's code while the guard is held are.
// The mutexes' blocks stay system calls: a handler that unwinds with the same libunwind while the
// thread holds one of them would wait for it for ever. Which kind a block is, is read from the code
// after its call: a look-up's block is followed first by a call through libunwind's PLT entry of
// dl_iterate_phdr (is_lookup_block). Anything else, in another libunwind build too, stays a call.
//
// Forks. A thread inside one of those sections holds a libunwind mutex or the loader's module-list
// lock, and a child forked meanwhile inherits it held with no thread to release it: its first
// unwind that needs it waits for ever (glibc 2.36 resets neither; a threaded program that forks
// while its threads allocate from new stacks, 1 child in 1,000 hung). So heapkeeper's fork-prepare
// handler waits until no other thread is inside one (they last microseconds), and a thread about
// to enter one waits while a fork is being prepared (begin_fork_for_unwinder...).
#pragma once

#include <signal.h>

#include <cstdint>

namespace heapkeeper::alloc {

// Finds libunwind's code. Called once at start, before the first unwind.
void locate_unwinder();

// For heapkeeper's sigprocmask, with the guard held on this thread, for a call whose return
// address is `caller`: notes libunwind's sections (for forks), and returns true when the call is
// a look-up's block or its restore, complete without a system call. The mask is then left as it
// is, and `old` (when given) receives a marker that no mask the kernel reports holds (SIGKILL and
// SIGSTOP alone), by which the restore that follows is recognised even if libunwind's code does
// not make it itself.
bool elide_unwinder_mask_call(const sigset_t* set, sigset_t* old, uintptr_t caller);

// heapkeeper's fork handlers: before the fork, waits (a bounded time: a thread stopped inside one
// must not hang the fork) until no other thread is inside a libunwind section, and holds new ones
// off until the fork is done, in the parent or the child.
void begin_fork_for_unwinder();
void end_fork_for_unwinder_in_parent();
void end_fork_for_unwinder_in_child();

}  // namespace heapkeeper::alloc
