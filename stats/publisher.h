// The stats publisher: the shared-memory segment of this process and the thread that keeps it
// current (twice a second) and answers commands from `heapkeeper` (scan, collect, report).
// Everything here runs off the hot path on heapkeeper's own thread, with the guard held.
#pragma once

namespace heapkeeper::stats {

// Creates /dev/shm/heapkeeper.<pid> and starts the publisher thread. If the segment cannot be
// created (no /dev/shm, full), says so in one line and leaves the program running untouched.
void install();

}  // namespace heapkeeper::stats
