// Forks that leave jemalloc's fork handlers out when no other thread can be inside jemalloc.
//
// jemalloc's fork handlers lock every one of its mutexes before the fork (a few hundred of them,
// spread over every arena's bins, extent caches and statistics), unlock them in the parent and
// initialise each again in the child. Both sides then write to every page holding one: pages the
// fork has just made copy-on-write, so the parent takes a page fault for each (with a TLB flush)
// and the child another. A shell or make, single-threaded programs that fork for every command,
// paid about 45 page faults and 0.9 ms a fork for it on a 2-vCPU paravirtualised guest (issue #12:
// a traced bash loop of 200 `/bin/true` with untraced children, 1.49 -> 1.31 s; plain 0.64 s).
//
// The handlers exist for the threads that might hold those mutexes while the fork copies the
// process. When the forking thread is the process's only thread of the program's and every thread
// of heapkeeper's is parked in one of its waits, there are none: the mutexes are all free, and
// the child's copy of jemalloc is as consistent as the parent's. Such a fork is "quiet": the
// handlers are skipped, and the child only empties jemalloc's list of per-thread states of the
// threads it does not have (a thread made later in the child could otherwise be listed twice).
//
// Which threads there are is the kernel's word (/proc/self/task), not heapkeeper's counts: a
// thread made by the raw system call, one still starting or exiting is listed there. Every task
// but the forking one must be a registered thread of heapkeeper's, parked; a thread of heapkeeper's
// that wakes meanwhile waits, before it does anything, until the fork is over (park and unpark are
// a Dekker pair with begin_quiet_fork: either the fork sees it awake, or it sees the fork). Forks
// stay full (jemalloc's handlers run) when another task is listed, when the forking thread is
// itself inside jemalloc (a signal handler's fork), when it is not the thread whose state it runs
// on (a fork inside a vfork child, whose listing names neither its parent nor the parent's threads),
// when the process may run under a seccomp filter (the listing's system calls), and for good once
// the program made a child that shares its memory without being its thread (clone with CLONE_VM):
// such a task is not in the listing.
#pragma once

namespace heapkeeper::alloc {

// For a thread of heapkeeper's, around each of its waits: from park until unpark it neither
// calls into jemalloc nor holds a lock a fork needs. unpark waits while a quiet fork is under way.
void park_internal_thread() noexcept;
void unpark_internal_thread() noexcept;
class ParkedWait {
 public:
  ParkedWait() noexcept { park_internal_thread(); }
  ~ParkedWait() { unpark_internal_thread(); }
  ParkedWait(const ParkedWait&) = delete;
  ParkedWait& operator=(const ParkedWait&) = delete;
};

// The program made a task that shares its memory but is not its thread: no fork is quiet from now.
void note_memory_sharing_child() noexcept;

// From the fork-prepare handler, on the forking thread: true when the fork may leave jemalloc's
// handlers out. The threads of heapkeeper's stay parked until end_quiet_fork, which the parent and
// the child call after a true answer.
bool begin_quiet_fork() noexcept;
void end_quiet_fork_in_parent() noexcept;
void end_quiet_fork_in_child() noexcept;

}  // namespace heapkeeper::alloc
