// The exported dup2 and dup3: after the program puts a file of its own on descriptor 2, or on the
// number heapkeeper's copy of the start-up stderr stands on, heapkeeper gives that copy up
// (allocator/diagnostics.h). Same result and errno as the original.
//
// A process that points its own 0-2 at /dev/null (`exec >/dev/null 2>&1` in a script, a service
// that detaches, os.dup2 in Python) tells whoever reads its old stderr that it is done with it:
// `x=$(prog 2>&1)` returns then. heapkeeper's copy kept that pipe open until the process ended (an
// adversarial tester's `$(...)` waited 3 s for a script's sleeps). glibc's own moves (daemon(3),
// posix_spawn's file actions, freopen) are internal calls and pass by; a forked child gives the
// copy up anyway.
#include <errno.h>
#include <unistd.h>

#include "allocator/diagnostics.h"
#include "preload/original_functions.h"

#define HK_EXPORT extern "C" __attribute__((visibility("default")))

HK_EXPORT int dup2(int old_fd, int new_fd) {
  auto* function = heapkeeper::preload::original_dup2();
  if (function == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  const int result = function(old_fd, new_fd);
  if (result >= 0) heapkeeper::alloc::note_descriptor_replaced(new_fd);
  return result;
}

HK_EXPORT int dup3(int old_fd, int new_fd, int flags) {
  auto* function = heapkeeper::preload::original_dup3();
  if (function == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  const int result = function(old_fd, new_fd, flags);
  if (result >= 0) heapkeeper::alloc::note_descriptor_replaced(new_fd);
  return result;
}
