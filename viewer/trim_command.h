// `heapkeeper trim PID`: asks a tracked process to give back now what its allocator keeps (every
// arena's dirty and muzzy pages, stats/publisher.cpp) and prints what that returned and the
// process's RSS before and after, measured here from /proc/PID/smaps_rollup.
#pragma once

#include <sys/types.h>

namespace heapkeeper::view {

// Returns the exit status: 0 done, 1 the process could not be asked or failed, 2 a bad pid.
int trim_process(pid_t pid, bool json);

}  // namespace heapkeeper::view
