// The stats publisher: the shared-memory segment of this process and the thread that keeps it
// current (twice a second) and answers commands from `heapkeeper` (scan, collect, report).
// Everything here runs off the hot path on heapkeeper's own thread, with the guard held.
#pragma once

namespace heapkeeper::stats {

// Creates /dev/shm/heapkeeper.<pid> and starts the publisher thread. If the segment cannot be
// created (no /dev/shm, full), says so in one line and leaves the program running untouched.
void install();

// For _exit and _Exit (preload/immediate_exit.cpp), which run no exit handler: removes this
// process's segment file, which would otherwise stay in /dev/shm until a later traced process
// found it stale. Async-signal-safe (both are called from signal handlers and vfork children):
// system calls only, no lock, no allocation; a no-op in a process the segment is not its own.
void leave_at_immediate_exit() noexcept;

}  // namespace heapkeeper::stats
