// Stopping the world with ptrace, from a tracer task that shares the process's address space
// (LeakSanitizer's way, sanitizer_stoptheworld_linux_libcdep.cpp, written anew here).
//
// The scanning thread clones a task with CLONE_VM (not a thread: a thread cannot trace its own
// thread group). The tracer seizes every thread of the process (PTRACE_SEIZE), interrupts it
// (PTRACE_INTERRUPT) and reads its registers (PTRACE_GETREGSET), then tells the scanning thread the
// world is stopped and waits; the scanning thread marks; the tracer detaches everyone. Under
// ptrace an interrupted system call restarts transparently (nanosleep, poll, select, futex...)
// and no signal of the program's is taken; signals that arrive meanwhile are passed on. Threads
// inside a wrapped blocking call are seized but not interrupted (blocking_call.h), since some
// calls return EINTR after any interruption.
//
// The tracer runs on its own stack but with the scanning thread's thread pointer: it uses raw
// system calls only and touches no TLS.
#pragma once

#include <sys/types.h>

#include <cstddef>

#include "collector/world_stop.h"

namespace heapkeeper::collect {

// kTimedOut: a thread did not stop within the deadline (a starved machine, or a thread held in the
// kernel): unlike kFailed, the next attempt may well succeed.
enum class PtraceOutcome { kStopped, kRefused, kFailed, kTimedOut };

// Stops every thread but the caller and `excluded`; on kStopped, call ptrace_resume() after the
// scan. kRefused: ptrace is not allowed here (errno-like reason in `failure`), nothing was changed.
PtraceOutcome ptrace_stop(StoppedThread* slots, size_t capacity, const pid_t* excluded, size_t excluded_count,
                          size_t& count, char* failure, size_t failure_size);
void ptrace_resume();

}  // namespace heapkeeper::collect
