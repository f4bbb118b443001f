// Processes that share this one's memory without being its threads: children the program made with
// clone(CLONE_VM) and no CLONE_THREAD (hand-rolled spawn helpers, a "process" that shares the
// parent's heap). They are not in /proc/self/task, so a scan can neither stop them nor read their
// registers and stack pointer, and they keep running while the heap is marked: a block held only in
// such a child's registers looked leaked, and collect mode freed it under the child (an adversarial
// round, helper-61). While one shares the memory, scans give no verdict (they are skipped, saying
// why); once it has exec'd or ended (kcmp(KCMP_VM) tells), they go on.
//
// Only children made through glibc's clone() are seen (preload/clone_call.cpp): a raw clone system
// call is not.
#pragma once

#include <sys/types.h>

namespace heapkeeper::collect {

// Notes a child made with CLONE_VM and without CLONE_THREAD. Async-signal-safe, no allocation.
void note_memory_sharing_task(pid_t pid) noexcept;

// A noted child that still shares this process's memory (kcmp KCMP_VM; a child kcmp cannot compare
// counts as sharing while it is alive and not a zombie), or 0. Children that no longer share it are
// forgotten. System calls only.
pid_t memory_sharing_task() noexcept;

}  // namespace heapkeeper::collect
