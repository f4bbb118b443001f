// Kernel roots: pointers the program has handed to the kernel (or to libc's helper threads), which
// no scan of the program's memory can see while the kernel holds them.
//
// A program may register a heap block with the kernel and drop every pointer of its own: the
// `data.ptr` of an `epoll_ctl` registration comes back from `epoll_wait`, the `sival_ptr` of a
// `timer_create` sigevent comes back in each expiry's siginfo (or as the SIGEV_THREAD argument),
// an AIO `aiocb` (and its sigevent and buffer) comes back from `aio_return` or a notification, a
// kernel AIO `iocb` submitted with libaio's `io_submit` (and its `data` and buffer) comes back in
// an `io_getevents` event, and the stack given to `sigaltstack` is where signal handlers will run.
// Such a block is reachable, and treating it as leaked would report a leak that is none — and
// collect mode would free a block the kernel will hand back. The interposed calls record these
// pointers here while they are registered, and every scan takes them as roots.
//
// Removal is on the call that ends a registration: EPOLL_CTL_DEL, timer_delete, aio_return, the
// io_getevents (or io_pgetevents) event of an iocb, a successful io_cancel, io_destroy of its
// context (every iocb of it), a new sigaltstack (or SS_DISABLE) on the same thread, and a new
// epoll instance reusing a closed epoll fd's number (close() is not interposed). An entry that
// outlives its registration only keeps a block reachable: a leak can be missed, never invented.
//
// Not covered: io_uring (user_data travels through shared-memory rings, not through a call),
// values queued with sigqueue/pthread_sigqueue until delivered, mq_notify, lio_listio's own list
// sigevent once every request of the list has been returned, and the buffers of a vectored iocb
// (IOCB_CMD_PREADV/PWRITEV: the kernel copied its iovec array, which is kept, and the buffers only
// through it). A program that reaps libaio completions from the ring itself (fio's userspace_reap)
// leaves its iocbs recorded until they are submitted again or their context is destroyed.
//
// Updates take a spin lock (these calls are rare, never on a malloc/free path); the scanner never
// takes it — a stopped thread may hold it — and reads the table through the marker's copying
// reads, so an entry half-written at that moment is at worst one stale or missing word. A signal
// handler that makes one of these calls while its own thread is inside an update does not wait
// for itself: its update is skipped (the one registration that can go unrecorded).
#pragma once

#include <aio.h>
#include <signal.h>
#include <sys/epoll.h>
#include <time.h>

#include <cstddef>
#include <cstdint>

struct io_context;  // libaio's io_context_t points to one (the kernel's AIO ring)
struct iocb;
struct io_event;

namespace heapkeeper::collect {

// The interposed calls, each run around the original (passed in by preload/). Same results and
// errno as the original.
using EpollCreate1Function = int (*)(int);
using EpollCreateFunction = int (*)(int);
using EpollCtlFunction = int (*)(int, int, int, epoll_event*);
using TimerCreateFunction = int (*)(clockid_t, sigevent*, timer_t*);
using TimerDeleteFunction = int (*)(timer_t);
using AioRequestFunction = int (*)(aiocb*);
using AioFsyncFunction = int (*)(int, aiocb*);
using AioReturnFunction = ssize_t (*)(aiocb*);
using LioListioFunction = int (*)(int, aiocb* const[], int, sigevent*);
using SigaltstackFunction = int (*)(const stack_t*, stack_t*);
// libaio's (the program links it): its context is a pointer to an opaque struct; iocb and io_event
// are the kernel's (linux/aio_abi.h), which libaio's are, field for field. Results are libaio's:
// negative error numbers, errno untouched.
using IoSubmitFunction = int (*)(io_context*, long, iocb**);
using IoCancelFunction = int (*)(io_context*, iocb*, io_event*);
using IoDestroyFunction = int (*)(io_context*);

int epoll_create_with_roots(EpollCreateFunction original, int size) noexcept;
int epoll_create1_with_roots(EpollCreate1Function original, int flags) noexcept;
int epoll_ctl_with_roots(EpollCtlFunction original, int epfd, int op, int fd, epoll_event* event) noexcept;
int timer_create_with_roots(TimerCreateFunction original, clockid_t clock, sigevent* event, timer_t* timer) noexcept;
int timer_delete_with_roots(TimerDeleteFunction original, timer_t timer) noexcept;
int aio_request_with_roots(AioRequestFunction original, aiocb* request) noexcept;
int aio_fsync_with_roots(AioFsyncFunction original, int operation, aiocb* request) noexcept;
ssize_t aio_return_with_roots(AioReturnFunction original, aiocb* request) noexcept;
int lio_listio_with_roots(LioListioFunction original, int mode, aiocb* const list[], int count,
                          sigevent* event) noexcept;
int sigaltstack_with_roots(SigaltstackFunction original, const stack_t* stack, stack_t* old) noexcept;
int io_submit_with_roots(IoSubmitFunction original, io_context* context, long count, iocb** requests) noexcept;
int io_cancel_with_roots(IoCancelFunction original, io_context* context, iocb* request, io_event* event) noexcept;
int io_destroy_with_roots(IoDestroyFunction original, io_context* context) noexcept;
// After libaio's io_getevents or io_pgetevents on `context` returned `count` (a negative count is
// an error): the iocbs of these events are the program's alone again. Keeps errno.
void io_events_returned(const io_context* context, const io_event* events, long count) noexcept;

// For the scanner, with the world stopped: calls visit(start, end) for each memory range holding
// registered pointers. Takes no lock.
template <typename Visitor>
void for_each_kernel_root_range(Visitor&& visit);

// The same, as a plain function (defined in kernel_roots.cpp).
void kernel_root_ranges(void (*visit)(uintptr_t start, uintptr_t end, void* context), void* context) noexcept;

template <typename Visitor>
void for_each_kernel_root_range(Visitor&& visit) {
  kernel_root_ranges(
      [](uintptr_t start, uintptr_t end, void* context) { (*static_cast<Visitor*>(context))(start, end); }, &visit);
}

// How many registrations are held now (tests, diagnostics).
size_t kernel_root_count() noexcept;

// In a forked child (one thread, registered with the engine's fork handlers): releases the lock a
// vanished thread may hold, and drops what the child does not inherit (timers, AIO requests, other
// threads' alternate stacks).
void kernel_roots_after_fork() noexcept;

}  // namespace heapkeeper::collect
