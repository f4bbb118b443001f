// libunwind's critical sections inside heapkeeper's own unwinds: their signal blocks, and forks.
//
// libunwind brackets each of its critical sections with a block of every signal and a restore of
// the saved mask (two rt_sigprocmask system calls): its look-ups of unwind information (under the
// loader's lock, at each miss of its caches), its register-state cache (Debian's 1.6.2 has no
// per-thread one: every slow step takes the global cache's lock), its memory pools. libunwind
// calls sigprocmask through its PLT, so heapkeeper's sigprocmask sees every one of them.
//
// Signal blocks. The blocks exist so that a signal handler which unwinds with the same libunwind
// cannot land inside a section and wait for ever for a lock its own thread holds (the pools' and
// the cache's are not recursive; even the loader's recursive lock has a window between taking the
// lock and recording its owner). While no loaded object but heapkeeper needs libunwind, no
// handler of the program unwinds with it, and inside heapkeeper's capture nothing else needs the
// blocks: a handler that interrupts the capture and allocates is served without a capture (the
// guard is held). Then libunwind's blocks and restores in heapkeeper's unwinds take no system call
// (elide_unwinder_mask_call): a traced `python3 -c pass` made 20,500 of them, its small-live-set
// churn 31,000, sqlite3's workload 7,700, a microsecond each in a VM. Under the signal fallback
// the suspend signal then stays deliverable there, as collector/world_stop.h needs. As soon as
// another object needs libunwind (DT_NEEDED: a profiler such as gperftools' unwinding in its
// SIGPROF handler), seen at start and at every outermost section once the loader's count of loads
// (dlpi_adds) moved, every block is made again. The program's own calls, from a handler or not,
// are never elided: only calls made from libunwind's code while the guard is held are. Left: a
// library that needs libunwind, dlopened while another thread is inside a section, whose handler
// fires inside that very section; and a program that dlsym's libunwind without linking it.
//
// Forks. A thread inside one of those sections holds one of those locks, and a child forked
// meanwhile inherits it held with no thread to release it: its first unwind that needs it waits
// for ever (glibc 2.36 resets none of them; a threaded program forking while its threads allocate
// from new stacks hung 1 child in 1,000). So heapkeeper's fork-prepare handler waits until no
// other thread is inside one (they last microseconds), and a thread about to enter one waits while
// a fork is being prepared.
#pragma once

#include <signal.h>

#include <cstdint>
#include <optional>

namespace heapkeeper::alloc {

// Finds libunwind's code and whether another loaded object needs it. Called once at start, before
// the first unwind.
void locate_unwinder();

// Whether `address` lies in libunwind's code; nullopt before locate_unwinder found it.
std::optional<bool> is_unwinder_code(uintptr_t address);

// Whether an object other than heapkeeper needs libunwind (seen at start, or at a section since):
// the program may unwind with it itself.
bool unwinder_used_by_others();

// For heapkeeper's sigprocmask, with the guard held on this thread, for a call whose return
// address is `caller`: notes libunwind's sections (for forks), and returns true when the call is
// complete without a system call (libunwind's block or restore while it is heapkeeper's alone).
// The mask is then left as it is, and `old` (when given) receives a marker no set the program or
// the kernel makes holds (SIGKILL and SIGSTOP alone, and a tag in the set's second word), by which
// the restore that follows is recognised even if libunwind's code does not make it itself.
bool elide_unwinder_mask_call(const sigset_t* set, sigset_t* old, uintptr_t caller);

// heapkeeper's fork handlers: before the fork, waits (a bounded time: a thread stopped inside one
// must not hang the fork) until no other thread is inside a libunwind section, and holds new ones
// off until the fork is done, in the parent or the child.
void begin_fork_for_unwinder();
void end_fork_for_unwinder_in_parent();
void end_fork_for_unwinder_in_child();

// A dl_iterate_phdr of heapkeeper's own (it holds the loader's lock) made on a thread the program's
// fork() would not otherwise wait for: the live-stats publisher naming the modules of its sites for
// a reader. Counted as a section, so that a fork waits for it and it waits for a fork: a child forked
// while the publisher held the lock inherited it held, and hung at its first unwind (the stress
// fork-exec scenario, a `stats --json` sampling the run: one run in six).
class LoaderLockSection {
 public:
  LoaderLockSection() noexcept;
  ~LoaderLockSection();
  LoaderLockSection(const LoaderLockSection&) = delete;
  LoaderLockSection& operator=(const LoaderLockSection&) = delete;
};

}  // namespace heapkeeper::alloc
