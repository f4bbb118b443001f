// pipe, pipe2 and syscall, exported so that libunwind's memory validation uses no descriptor of
// the program's, and so that heapkeeper learns when the program installs a seccomp filter.
//
// libunwind (1.6) validates an address before it reads it once a frame without unwind information
// made it fall back to frame pointers, which happens in every real program (ld.so's entry code has
// none): it writes one byte from the address into a pipe it opened at start (the write fails with
// EFAULT for an unreadable address) and reads one byte back to keep the pipe from filling. It
// opens the pipe once and uses its two numbers for the life of the process, and when a read fails
// it closes both and opens another pipe. Every descriptor number is the program's to take or to
// test (`exec 992<file` in a script, dup2, a daemon closing everything, bash saving and restoring
// a number it finds open): libunwind read the program's input, wrote raw memory into its files or
// closed them, and a pipe merely kept at high numbers was still seen, and changed what bash did.
//
// So no pipe is made. libunwind's pipe2 call (from libunwind's code, with O_CLOEXEC | O_NONBLOCK,
// in heapkeeper's unwind or in the program's own) gets two tokens, negative numbers no descriptor can have. Its
// read of the read token (through the exported read, blocking_calls.cpp) finds the pipe empty; its
// write of one byte to the write token (libunwind writes with syscall(SYS_write, ...), so that ASan
// does not check the byte) becomes a one-byte process_vm_readv of the address from this very
// process, which fails with EFAULT where the write would have. No descriptor is opened, read or
// written. Under a seccomp filter, which may kill the process for process_vm_readv (services deny
// the debugging calls), the address counts as unreadable instead: the stack ends at the first frame
// without unwind information, usually the outermost anyway. A pipe heapkeeper's own code makes
// under the guard is moved up to high numbers, out of the way of the small ones programs get.
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/seccomp.h>

#define UNW_LOCAL_ONLY  // the local unwinder, which heapkeeper calls (stack_capture.cpp)
#include <libunwind.h>

#include "allocator/engine.h"
#include "allocator/own_memory.h"
#include "allocator/quiet_fork.h"
#include "allocator/syscall_filter.h"
#include "allocator/thread_credentials.h"
#include "allocator/thread_registry.h"
#include "allocator/unwinder_masks.h"
#include "collector/collector.h"
#include "collector/world_stop.h"
#include "preload/credential_calls.h"
#include "preload/original_functions.h"
#include "preload/raw_fork.h"
#include "preload/validation_pipe.h"

#define HK_EXPORT extern "C" __attribute__((visibility("default")))

namespace heapkeeper::preload {
namespace {

constexpr int kHighDescriptor = 992;  // below the usual soft limit of 1024, far from what programs use

// Moves both ends of a pipe heapkeeper made to high descriptors; an end that cannot move (a lower
// descriptor limit, the table full) stays where it is.
void move_out_of_the_way(int descriptors[2], bool close_on_exec) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur <= kHighDescriptor + 2) return;
  for (int i = 0; i < 2; ++i) {
    const int moved = fcntl(descriptors[i], close_on_exec ? F_DUPFD_CLOEXEC : F_DUPFD, kHighDescriptor);
    if (moved < 0) continue;
    close(descriptors[i]);
    descriptors[i] = moved;
  }
}

bool heapkeeper_is_running() { return alloc::tls_thread.guard != 0; }

// libunwind's own code, told apart from heapkeeper's (report/analysis_handoff.cpp makes a pipe
// under the guard too) by where the caller's return address lies: libunwind's code range, found at
// start (allocator/unwinder_masks.h), without the loader's lock that dladdr takes (the program's own
// unwinds reach here at every address they validate); before that, the object dladdr names.
bool called_from_libunwind(void* return_address) {
  if (const std::optional<bool> known = alloc::is_unwinder_code(reinterpret_cast<uintptr_t>(return_address)))
    return *known;
  Dl_info caller{}, unwinder{};
  return dladdr(return_address, &caller) != 0 && dladdr(reinterpret_cast<void*>(&unw_step), &unwinder) != 0 &&
         caller.dli_fbase == unwinder.dli_fbase;
}

// libunwind's test of `address`: 1 if one byte of it can be read, -1 with EFAULT if not.
long validate_address(const void* address) {
  char byte;
  if (alloc::read_own_memory(reinterpret_cast<uintptr_t>(address), &byte, 1)) return 1;
  errno = EFAULT;
  return -1;
}

}  // namespace

std::optional<ssize_t> read_validation_pipe(void* /*buffer*/, size_t /*size*/, void* caller) {
  if (!heapkeeper_is_running() && !called_from_libunwind(caller)) return std::nullopt;
  errno = EAGAIN;  // the pipe is always empty: libunwind keeps its tokens and goes on
  return -1;
}

}  // namespace heapkeeper::preload

using heapkeeper::preload::kValidationReadToken;
using heapkeeper::preload::kValidationWriteToken;

HK_EXPORT int pipe2(int descriptors[2], int flags) {
  auto* function = heapkeeper::preload::original_pipe2();
  if (function == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  // Whoever unwinds first: the program's own unwind through a frame without unwind information
  // made libunwind open a real pipe, on the program's lowest free numbers, which every later
  // unwind used, heapkeeper's too (reading the program's input, writing memory into its files).
  if (flags == (O_CLOEXEC | O_NONBLOCK) && heapkeeper::preload::called_from_libunwind(__builtin_return_address(0))) {
    descriptors[0] = kValidationReadToken;
    descriptors[1] = kValidationWriteToken;
    return 0;
  }
  const int result = function(descriptors, flags);
  if (result == 0 && heapkeeper::preload::heapkeeper_is_running()) {
    const int saved_errno = errno;
    heapkeeper::preload::move_out_of_the_way(descriptors, (flags & O_CLOEXEC) != 0);
    errno = saved_errno;
  }
  return result;
}

HK_EXPORT int pipe(int descriptors[2]) {
  auto* function = heapkeeper::preload::original_pipe();
  if (function == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  const int result = function(descriptors);
  if (result == 0 && heapkeeper::preload::heapkeeper_is_running()) {
    const int saved_errno = errno;
    heapkeeper::preload::move_out_of_the_way(descriptors, false);
    errno = saved_errno;
  }
  return result;
}

// clone3's arguments (flags first, the child's stack sixth: linux/sched.h's struct clone_args),
// read only when the size covers them; a fork when it names no stack and shares no memory.
static bool clone3_copies_process(long arguments, long size) {
  if (arguments == 0 || size < 48) return false;
  const auto* words = reinterpret_cast<const unsigned long long*>(arguments);
  return words[5] == 0 && heapkeeper::preload::copies_process(words[0]);
}

// libunwind writes to its pipe with syscall(SYS_write, ...) rather than write() (so that ASan does not
// check the byte it reads); a program installs a seccomp filter with syscall(SYS_seccomp, ...), as
// libseccomp does. Every call passes through with all six arguments, as glibc's syscall takes them.
HK_EXPORT long syscall(long number, ...) {
  va_list list;
  va_start(list, number);
  long a[6];
  for (long& argument : a) argument = va_arg(list, long);
  va_end(list);
  auto* function = heapkeeper::preload::original_syscall();
  if (function == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  // libunwind's write, in heapkeeper's capture or the program's own unwind; another call on that
  // number is the kernel's.
  if (number == SYS_write && static_cast<int>(a[0]) == kValidationWriteToken &&
      (heapkeeper::preload::heapkeeper_is_running() ||
       heapkeeper::preload::called_from_libunwind(__builtin_return_address(0)))) [[unlikely]] {
    const int saved_errno = errno;
    const long result = heapkeeper::preload::validate_address(reinterpret_cast<const void*>(a[1]));
    if (result >= 0) errno = saved_errno == EINTR ? 0 : saved_errno;  // libunwind loops while errno is EINTR
    return result;
  }
  if (number == SYS_prctl && a[0] == PR_SET_NO_NEW_PRIVS && a[1] != 0) heapkeeper::alloc::note_no_new_privileges();
  if (number == SYS_seccomp && a[0] == SECCOMP_SET_MODE_FILTER) {
    heapkeeper::alloc::start_deferred_threads_for_program(true);  // while clone is still allowed
    heapkeeper::alloc::note_syscall_filter();
    heapkeeper::collect::fall_back_to_signals_now();
  } else if (number == SYS_seccomp && a[0] == SECCOMP_SET_MODE_STRICT) {
    // Read, write and exit only: the check a deferred thread's start makes (fstat, or
    // /proc/self/status) would kill the process as surely as the clone.
    heapkeeper::alloc::drop_deferred_threads();
    heapkeeper::alloc::note_syscall_filter();
    heapkeeper::collect::fall_back_to_signals_now();
  }
  if (number == SYS_execve || number == SYS_execveat) {  // as the exec family (exec_calls.cpp)
    const bool held = heapkeeper::collect::hold_scans_for_exec();
    const long result = function(number, a[0], a[1], a[2], a[3], a[4], a[5]);
    const int saved_errno = errno;
    heapkeeper::collect::allow_scans_after_exec(held);
    errno = saved_errno;
    return result;
  }
  // A fork by clone, clone3 or fork itself, on this stack (preload/raw_fork.h).
  const bool copies = (number == SYS_clone && a[1] == 0 && heapkeeper::preload::copies_process(a[0])) ||
                      (number == SYS_clone3 && clone3_copies_process(a[0], a[1])) || number == SYS_fork;
  if (copies && heapkeeper::preload::program_call())
    return heapkeeper::preload::fork_like([&](bool) { return function(number, a[0], a[1], a[2], a[3], a[4], a[5]); });
  // A task sharing the program's memory without being its thread: no fork is quiet from now on.
  const unsigned long long clone_flags = number == SYS_clone ? static_cast<unsigned long>(a[0])
                                         : number == SYS_clone3 && a[0] != 0 && a[1] >= 8
                                             ? *reinterpret_cast<const unsigned long long*>(a[0])
                                             : 0;
  if ((clone_flags & CLONE_VM) != 0 && (clone_flags & (CLONE_THREAD | CLONE_VFORK)) == 0 &&
      heapkeeper::preload::program_call())
    heapkeeper::alloc::note_memory_sharing_child();
  const long result = function(number, a[0], a[1], a[2], a[3], a[4], a[5]);
  // heapkeeper's threads take what the program's thread now has (raw system calls: errno stays).
  if (result >= 0 && heapkeeper::preload::syscall_changes_credentials(number, a[0], a[1]))
    heapkeeper::preload::share_changed_credentials(number == SYS_prctl ? a[0] : -1);
  return result;
}

HK_EXPORT int prctl(int option, ...) {
  va_list list;
  va_start(list, option);
  unsigned long a[4];
  for (unsigned long& argument : a) argument = va_arg(list, unsigned long);
  va_end(list);
  auto* function = heapkeeper::preload::original_prctl();
  if (function == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  if (option == PR_SET_NO_NEW_PRIVS && a[0] != 0) heapkeeper::alloc::note_no_new_privileges();
  if (option == PR_SET_SECCOMP && a[0] == SECCOMP_MODE_STRICT) {
    heapkeeper::alloc::drop_deferred_threads();  // see the syscall wrapper above
    heapkeeper::alloc::note_syscall_filter();
    heapkeeper::collect::fall_back_to_signals_now();
  } else if (option == PR_SET_SECCOMP) {                          // before: it applies at once
    heapkeeper::alloc::start_deferred_threads_for_program(true);  // while clone is still allowed
    heapkeeper::alloc::note_syscall_filter();
    heapkeeper::collect::fall_back_to_signals_now();
  }
  const int result = function(option, a[0], a[1], a[2], a[3]);
  if (result >= 0 && heapkeeper::preload::prctl_changes_credentials(option, a[0]))
    heapkeeper::preload::share_changed_credentials(option);  // as in the syscall wrapper above
  return result;
}
