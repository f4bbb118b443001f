// Which parts of the stacks that exited threads left behind are no roots.
//
// glibc keeps the stacks of exited threads for reuse (see allocator/exited_stacks.h); the scan
// would otherwise take them for ordinary anonymous mappings and every stale word in them for a
// reference. An exited thread's stack proper — everything below its static TLS — is excluded.
// The top of the mapping stays a root: glibc's thread control block there still owns the thread's
// DTV and dynamic TLS blocks (freed when the stack is reused), which are not leaks; only
// heapkeeper's own TLS block in it is excluded (own_tls.h).
//
// A record is trusted only when all of these hold, so a live frame is never skipped:
//  - the thread no longer exists (during its teardown it still runs on that stack);
//  - no stopped thread's stack pointer is inside (a new thread that took the cached stack and
//    has not registered yet), and no registered thread's stack overlaps it;
//  - the whole stack lies in one anonymous writable mapping and the thread control block is still
//    there (its first word points to itself, as the x86-64 TLS ABI requires): glibc has not
//    unmapped the stack and nothing else was mapped in its place;
//  - glibc told us the size of the static TLS (otherwise its boundary is unknown).
#pragma once

#include <cstddef>

#include "collector/os_primitives.h"
#include "collector/world_stop.h"

namespace heapkeeper::collect {

// Looks up glibc's static TLS layout once. Call before the world is stopped: dlsym may allocate
// and take the loader's lock.
void look_up_static_tls_layout();

// With the world stopped: appends to `out` (at most `capacity`) the ranges of exited threads'
// stacks that are no roots; returns how many were appended.
size_t exited_stack_exclusions(const StoppedThread* threads, size_t thread_count, const MemoryRange* anonymous,
                               size_t anonymous_count, MemoryRange* out, size_t capacity);

// The main thread after pthread_exit stays a zombie until the process ends, and its stack stays
// mapped, but every frame below the process's entry point (__libc_stack_end: main's frame and all
// below it) is dead; only argc, argv, the environment and the auxiliary vector above it remain.
// With the world stopped: when the leader has exited (and the caller is not it), appends that dead
// range of its stack to `out`; returns how many ranges were appended (0 or 1). Stale copies there
// of blocks the main thread once held kept blocks lost later by other threads alive.
size_t exited_leader_stack_exclusion(const MemoryRange* anonymous, size_t anonymous_count, MemoryRange* out,
                                     size_t capacity);

}  // namespace heapkeeper::collect
