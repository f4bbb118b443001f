// The exported _exit and _Exit: a process that ends without its exit handlers (dash's `sh -c`, a
// forked worker, a child after a failed exec) still removes its live-stats segment
// (stats/publisher.h), then ends as glibc's _exit does, with exit_group. Not forwarded to the
// original: looking it up (dlsym) is not async-signal-safe, and _exit is called from signal
// handlers and vfork children. exit() is not wrapped: its handlers remove the segment.
#include <sys/syscall.h>

#include "allocator/raw_syscall.h"
#include "stats/publisher.h"

#define HK_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

[[noreturn]] void end_process(int status) noexcept {
  heapkeeper::stats::leave_at_immediate_exit();
  for (;;) {
    // exit_group does not return; glibc's _exit falls back to exit (one thread) as well.
    heapkeeper::alloc::raw_syscall(SYS_exit_group, status);
    heapkeeper::alloc::raw_syscall(SYS_exit, status);
  }
}

}  // namespace

HK_EXPORT __attribute__((noreturn)) void _exit(int status) noexcept { end_process(status); }
HK_EXPORT __attribute__((noreturn)) void _Exit(int status) noexcept { end_process(status); }
