// The exported calls that hand the kernel a pointer (epoll, POSIX timers, AIO, libaio's kernel AIO,
// alternate signal stacks). Each forwards to collector/kernel_roots.h with its original, which keeps the pointers as
// roots while the kernel holds them; the calls' results and errno are the originals'.
#include <aio.h>
#include <errno.h>
#include <signal.h>
#include <sys/epoll.h>
#include <time.h>

#include "collector/kernel_roots.h"
#include "preload/original_functions.h"

#define HK_EXPORT extern "C" __attribute__((visibility("default")))

namespace collect = heapkeeper::collect;
namespace preload = heapkeeper::preload;

namespace {

// The original could not be found (a libc without the call): fail as a missing system call would.
template <typename Result>
Result unavailable() {
  errno = ENOSYS;
  return static_cast<Result>(-1);
}

// On x86-64 the 64-bit-offset AIO structures are the plain ones under another name.
static_assert(sizeof(aiocb64) == sizeof(aiocb) && offsetof(aiocb64, aio_sigevent) == offsetof(aiocb, aio_sigevent) &&
              offsetof(aiocb64, aio_buf) == offsetof(aiocb, aio_buf) &&
              offsetof(aiocb64, aio_lio_opcode) == offsetof(aiocb, aio_lio_opcode));

template <typename Plain, typename Wide>
Plain as_plain(Wide function) {
  return reinterpret_cast<Plain>(function);
}

}  // namespace

HK_EXPORT int epoll_create(int size) noexcept {
  auto original = preload::original_epoll_create();
  return original == nullptr ? unavailable<int>() : collect::epoll_create_with_roots(original, size);
}
HK_EXPORT int epoll_create1(int flags) noexcept {
  auto original = preload::original_epoll_create1();
  return original == nullptr ? unavailable<int>() : collect::epoll_create1_with_roots(original, flags);
}
HK_EXPORT int epoll_ctl(int epfd, int op, int fd, epoll_event* event) noexcept {
  auto original = preload::original_epoll_ctl();
  return original == nullptr ? unavailable<int>() : collect::epoll_ctl_with_roots(original, epfd, op, fd, event);
}

HK_EXPORT int timer_create(clockid_t clock, sigevent* __restrict event, timer_t* __restrict timer) noexcept {
  auto original = preload::original_timer_create();
  return original == nullptr ? unavailable<int>() : collect::timer_create_with_roots(original, clock, event, timer);
}
HK_EXPORT int timer_delete(timer_t timer) noexcept {
  auto original = preload::original_timer_delete();
  return original == nullptr ? unavailable<int>() : collect::timer_delete_with_roots(original, timer);
}

HK_EXPORT int sigaltstack(const stack_t* __restrict stack, stack_t* __restrict old) noexcept {
  auto original = preload::original_sigaltstack();
  return original == nullptr ? unavailable<int>() : collect::sigaltstack_with_roots(original, stack, old);
}

HK_EXPORT int aio_read(aiocb* request) noexcept {
  auto original = preload::original_aio_read();
  return original == nullptr ? unavailable<int>() : collect::aio_request_with_roots(original, request);
}
HK_EXPORT int aio_write(aiocb* request) noexcept {
  auto original = preload::original_aio_write();
  return original == nullptr ? unavailable<int>() : collect::aio_request_with_roots(original, request);
}
HK_EXPORT int aio_fsync(int operation, aiocb* request) noexcept {
  auto original = preload::original_aio_fsync();
  return original == nullptr ? unavailable<int>() : collect::aio_fsync_with_roots(original, operation, request);
}
HK_EXPORT ssize_t aio_return(aiocb* request) noexcept {
  auto original = preload::original_aio_return();
  return original == nullptr ? unavailable<ssize_t>() : collect::aio_return_with_roots(original, request);
}
HK_EXPORT int lio_listio(int mode, aiocb* const list[], int count, sigevent* __restrict event) noexcept {
  auto original = preload::original_lio_listio();
  return original == nullptr ? unavailable<int>() : collect::lio_listio_with_roots(original, mode, list, count, event);
}

HK_EXPORT int aio_read64(aiocb64* request) noexcept {
  auto original = preload::original_aio_read64();
  if (original == nullptr) return unavailable<int>();
  return collect::aio_request_with_roots(as_plain<collect::AioRequestFunction>(original),
                                         reinterpret_cast<aiocb*>(request));
}
HK_EXPORT int aio_write64(aiocb64* request) noexcept {
  auto original = preload::original_aio_write64();
  if (original == nullptr) return unavailable<int>();
  return collect::aio_request_with_roots(as_plain<collect::AioRequestFunction>(original),
                                         reinterpret_cast<aiocb*>(request));
}
HK_EXPORT int aio_fsync64(int operation, aiocb64* request) noexcept {
  auto original = preload::original_aio_fsync64();
  if (original == nullptr) return unavailable<int>();
  return collect::aio_fsync_with_roots(as_plain<collect::AioFsyncFunction>(original), operation,
                                       reinterpret_cast<aiocb*>(request));
}
HK_EXPORT ssize_t aio_return64(aiocb64* request) noexcept {
  auto original = preload::original_aio_return64();
  if (original == nullptr) return unavailable<ssize_t>();
  return collect::aio_return_with_roots(as_plain<collect::AioReturnFunction>(original),
                                        reinterpret_cast<aiocb*>(request));
}
HK_EXPORT int lio_listio64(int mode, aiocb64* const list[], int count, sigevent* __restrict event) noexcept {
  auto original = preload::original_lio_listio64();
  if (original == nullptr) return unavailable<int>();
  return collect::lio_listio_with_roots(as_plain<collect::LioListioFunction>(original), mode,
                                        reinterpret_cast<aiocb* const*>(list), count, event);
}

// libaio's calls: what they return is libaio's (a negative error number, errno untouched); without
// libaio, -ENOSYS as libaio would say it.
HK_EXPORT int io_submit(io_context* context, long count, iocb** requests) noexcept {
  auto original = preload::original_io_submit();
  return original == nullptr ? -ENOSYS : collect::io_submit_with_roots(original, context, count, requests);
}
HK_EXPORT int io_cancel(io_context* context, iocb* request, io_event* event) noexcept {
  auto original = preload::original_io_cancel();
  return original == nullptr ? -ENOSYS : collect::io_cancel_with_roots(original, context, request, event);
}
HK_EXPORT int io_destroy(io_context* context) noexcept {
  auto original = preload::original_io_destroy();
  return original == nullptr ? -ENOSYS : collect::io_destroy_with_roots(original, context);
}
