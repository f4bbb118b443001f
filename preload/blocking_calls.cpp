// The exported blocking calls: each marks the thread as inside a blocking call for the collector
// (collector/blocking_call.h) and calls libc's original (libaio's waits then release the kernel
// roots of the requests they returned, collector/kernel_roots.h). read also answers libunwind's
// reads of its validation pipe's token (validation_pipe.h). The waiting calls (waitpid,
// sem_wait...) only start a forked child's deferred threads first. Not noexcept: pthread_cancel unwinds through these
// frames.
#undef _FORTIFY_SOURCE  // the fortified inline versions of read/recv/poll would clash with ours
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/sem.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <type_traits>

#include "allocator/engine.h"
#include "collector/blocking_call.h"
#include "collector/kernel_roots.h"
#include "preload/blocking_functions.h"
#include "preload/original_functions.h"
#include "preload/validation_pipe.h"

extern "C" {
int __poll_chk(struct pollfd*, nfds_t, int, size_t);
int __ppoll_chk(struct pollfd*, nfds_t, const struct timespec*, const sigset_t*, size_t);
ssize_t __read_chk(int, void*, size_t, size_t);
ssize_t __recv_chk(int, void*, size_t, size_t, int);
ssize_t __recvfrom_chk(int, void*, size_t, size_t, int, struct sockaddr*, socklen_t*);
}

namespace heapkeeper::preload {
namespace {

// Starts heapkeeper's deferred threads (live stats, allocator/engine.h) before the program waits
// in a call that may take long, rather than when they are due: a program that waits from its first
// milliseconds on (a server in accept, a shell at its prompt, `sleep 100`) would otherwise never
// publish. A read waits for long only on what is not a regular file (a pipe, a terminal, a
// socket): the engine asks the kernel, and only while a thread is deferred, that is in a forked
// child's first second. Writes and sends never start one, even when due: they are what signal handlers
// call (a self-pipe's write), and a thread is not created from a handler that may have interrupted
// the C library holding its own locks.
template <typename First, typename... Rest>
void before_blocking_call(uint32_t kind, First first, Rest... /*rest*/) noexcept {
  if (__builtin_expect(!alloc::deferred_threads_pending(), 1) || kind == collect::kSend) return;
  int read_fd = -1;
  if constexpr (std::is_integral_v<First>) {
    if (kind == collect::kRead) read_fd = static_cast<int>(first);
  }
  alloc::start_deferred_threads_for_program(kind != collect::kRead, read_fd);
}

// io_getevents and io_pgetevents: the events' iocbs are the program's alone again.
template <typename... Rest>
void completions_returned(int count, io_context* context, long /*minimum*/, long /*count*/, io_event* events,
                          Rest... /*rest*/) noexcept {
  collect::io_events_returned(context, events, count);
}

// After a wrapped call has returned and its scope has ended (a scan that parked the thread is
// over: this is program time again). libaio's waits hand back iocbs the kernel held as roots.
template <uint32_t kind, typename Result, typename... Arguments>
void after_blocking_call(Result result, Arguments... arguments) noexcept {
  if constexpr (kind == collect::kAio) completions_returned(result, arguments...);
}

}  // namespace
}  // namespace heapkeeper::preload

#define HK_EXPORT extern "C" __attribute__((visibility("default")))
#define HK_LIST(...) __VA_ARGS__  // (a, b) -> a, b

// Each wrapper looks its original up on first use (a program may never call most of them).
// bugprone-macro-parentheses: a return type and a parameter list cannot be parenthesised.
// The start of every wrapper below: `function`, the next definition of `name`, or ENOSYS.
#define HEAPKEEPER_ORIGINAL_OR_ENOSYS(name, return_type, parameters)                   \
  using Function = return_type(*) parameters; /* NOLINT(bugprone-macro-parentheses) */ \
  static std::atomic<Function> original{nullptr};                                      \
  const Function function = heapkeeper::preload::cached_next_symbol(original, #name);  \
  if (function == nullptr) {                                                           \
    errno = ENOSYS;                                                                    \
    return static_cast<return_type>(-1);                                               \
  }

#define HEAPKEEPER_DEFINE_BLOCKING(name, kind, return_type, parameters, arguments)                          \
  HK_EXPORT return_type name parameters {                                                                   \
    HEAPKEEPER_ORIGINAL_OR_ENOSYS(name, return_type, parameters)                                            \
    if (auto token_read =                                                                                   \
            heapkeeper::preload::validation_read(function, __builtin_return_address(0), HK_LIST arguments)) \
      return static_cast<return_type>(*token_read);                                                         \
    heapkeeper::preload::before_blocking_call(heapkeeper::collect::kind, HK_LIST arguments);                \
    return_type result;                                                                                     \
    {                                                                                                       \
      heapkeeper::collect::BlockingCallScope scope(heapkeeper::collect::kind);                              \
      result = function arguments;                                                                          \
    }                                                                                                       \
    heapkeeper::preload::after_blocking_call<heapkeeper::collect::kind>(result, HK_LIST arguments);         \
    return result;                                                                                          \
  }
HEAPKEEPER_BLOCKING_FUNCTIONS(HEAPKEEPER_DEFINE_BLOCKING)
#undef HEAPKEEPER_DEFINE_BLOCKING

#define HEAPKEEPER_DEFINE_WAITING(name, return_type, parameters, arguments, may_wait)     \
  HK_EXPORT return_type name parameters {                                                 \
    HEAPKEEPER_ORIGINAL_OR_ENOSYS(name, return_type, parameters)                          \
    if (__builtin_expect(heapkeeper::alloc::deferred_threads_pending(), 0) && (may_wait)) \
      heapkeeper::alloc::start_deferred_threads_for_program(true);                        \
    return function arguments;                                                            \
  }
HEAPKEEPER_WAITING_FUNCTIONS(HEAPKEEPER_DEFINE_WAITING)
#undef HEAPKEEPER_DEFINE_WAITING
#undef HEAPKEEPER_ORIGINAL_OR_ENOSYS

// The longjmp family: a jump out of a signal handler that interrupted a wrapped call leaves that
// call without its wrapper returning (collector/blocking_call.h), so the call is ended first.
namespace {

// The stack pointer a glibc x86-64 jmp_buf restores (JB_RSP, word 6), mangled as setjmp stored it:
// rotated left by 17 bits after an xor with the thread's pointer guard (%fs:0x30).
uintptr_t jump_target_stack_pointer(const __jmp_buf_tag* buffer) noexcept {
  uintptr_t guard;
  asm("movq %%fs:0x30, %0" : "=r"(guard));
  const auto mangled = static_cast<uintptr_t>(buffer->__jmpbuf[6]);
  return ((mangled >> 17) | (mangled << (64 - 17))) ^ guard;
}

}  // namespace

#define HEAPKEEPER_DEFINE_JUMP(name, return_type, parameters)                              \
  HK_EXPORT __attribute__((noreturn)) void name(__jmp_buf_tag* buffer, int value) {        \
    auto function = heapkeeper::preload::original_##name();                                \
    if (function == nullptr) abort(); /* no libc longjmp: nothing sensible to return to */ \
    heapkeeper::collect::leave_blocking_calls_below(jump_target_stack_pointer(buffer));    \
    function(buffer, value);                                                               \
    __builtin_unreachable();                                                               \
  }
HEAPKEEPER_JUMP_FUNCTIONS(HEAPKEEPER_DEFINE_JUMP)  // __longjmp_chk: what fortified programs call
#undef HEAPKEEPER_DEFINE_JUMP
