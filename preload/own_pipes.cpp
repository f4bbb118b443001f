// pipe and pipe2, exported so that a pipe heapkeeper's own code makes does not take the
// program's descriptors.
//
// libunwind opens a pipe when it starts, and again whenever it finds it closed, to test addresses
// before reading them (when it falls back to frame-pointer unwinding through code without unwind
// information). Opened from heapkeeper's start-up, the pipe took the program's lowest free
// descriptors: a traced program's first open() returned 5 where it returns 3, a change the program
// can see. It cannot simply be closed afterwards: libunwind keeps the numbers, and on its next test
// would read from and write to whatever file the program opened on them. So a pipe made while
// heapkeeper runs on the calling thread (the reentrancy guard is held) is moved, before the caller
// sees it, to the lowest free descriptors from kHighDescriptor up, out of the way of the small
// numbers programs get and of the ones shells choose (bash: 10 and up, 255). The program's own
// pipes pass through untouched.
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "allocator/thread_registry.h"
#include "preload/original_functions.h"

#define HK_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr int kHighDescriptor = 992;  // below the usual soft limit of 1024, far from what programs use

// Moves both ends of a pipe heapkeeper made to high descriptors; an end that cannot move (a lower
// descriptor limit, the table full) stays where it is.
void move_out_of_the_way(int descriptors[2], bool close_on_exec) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur <= kHighDescriptor + 2) return;
  const int saved_errno = errno;
  for (int i = 0; i < 2; ++i) {
    const int moved = fcntl(descriptors[i], close_on_exec ? F_DUPFD_CLOEXEC : F_DUPFD, kHighDescriptor);
    if (moved < 0) continue;
    close(descriptors[i]);
    descriptors[i] = moved;
  }
  errno = saved_errno;
}

bool heapkeeper_is_running() { return heapkeeper::alloc::tls_thread.guard != 0; }

}  // namespace

HK_EXPORT int pipe2(int descriptors[2], int flags) {
  auto* function = heapkeeper::preload::original_pipe2();
  if (function == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  const int result = function(descriptors, flags);
  if (result == 0 && heapkeeper_is_running()) move_out_of_the_way(descriptors, (flags & O_CLOEXEC) != 0);
  return result;
}

HK_EXPORT int pipe(int descriptors[2]) {
  auto* function = heapkeeper::preload::original_pipe();
  if (function == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  const int result = function(descriptors);
  if (result == 0 && heapkeeper_is_running()) move_out_of_the_way(descriptors, false);
  return result;
}
