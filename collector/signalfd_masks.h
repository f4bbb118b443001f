// The program's signalfds under the signal fallback (world_stop.h).
//
// A signalfd takes its thread's pending signals whether they are blocked or not, so one whose mask
// holds the suspend signal can take a scan's signal before the handler runs: the thread never
// acknowledges (the scan waits 3 s and is skipped) and the program reads a signal it never asked
// for. The signalfd wrapper leaves the suspend signal out of masks made once the fallback is on;
// this takes it out of those the program made before, when the fallback begins.
#pragma once

namespace heapkeeper::collect {

// Every signalfd of the process (found in /proc/self/fd) whose mask holds `signal` loses it.
// Raw system calls only, no allocation: runs on a program's thread inside a wrapped call, or on the
// scanner before the world stops. Returns how many were changed.
int drop_signal_from_signalfds(int signal);

}  // namespace heapkeeper::collect
