// The blocking calls heapkeeper wraps so that a scan never interrupts them (see
// collector/blocking_call.h), as one X-macro list: X(name, kind, return type, parameter list,
// argument names). The _chk entries are what programs built with _FORTIFY_SOURCE call instead.
// io_getevents and io_pgetevents are libaio's (the program links it; libaio's header is not needed:
// its context is a pointer to an opaque struct, and what libaio returns, negative error numbers
// included, is passed on unchanged); the iocbs of the events they return stop being kernel roots
// (collector/kernel_roots.h).
#pragma once

// libaio's types, only ever passed through by pointer.
struct io_context;
struct io_event;

// clang-format off
#define HEAPKEEPER_BLOCKING_FUNCTIONS(X)                                                                         \
  X(sleep, kSleep, unsigned int, (unsigned int seconds), (seconds))                                              \
  X(usleep, kSleep, int, (useconds_t microseconds), (microseconds))                                              \
  X(nanosleep, kSleep, int, (const struct timespec* request, struct timespec* remain), (request, remain))        \
  X(clock_nanosleep, kSleep, int, (clockid_t clock, int flags, const struct timespec* request,                   \
    struct timespec* remain), (clock, flags, request, remain))                                                   \
  X(poll, kPoll, int, (struct pollfd* fds, nfds_t count, int timeout), (fds, count, timeout))                    \
  X(__poll_chk, kPoll, int, (struct pollfd* fds, nfds_t count, int timeout, size_t length),                      \
    (fds, count, timeout, length))                                                                               \
  X(ppoll, kPoll, int, (struct pollfd* fds, nfds_t count, const struct timespec* timeout, const sigset_t* mask), \
    (fds, count, timeout, mask))                                                                                 \
  X(__ppoll_chk, kPoll, int, (struct pollfd* fds, nfds_t count, const struct timespec* timeout,                  \
    const sigset_t* mask, size_t length), (fds, count, timeout, mask, length))                                   \
  X(select, kSelect, int, (int count, fd_set* readable, fd_set* writable, fd_set* failed,                        \
    struct timeval* timeout), (count, readable, writable, failed, timeout))                                      \
  X(pselect, kSelect, int, (int count, fd_set* readable, fd_set* writable, fd_set* failed,                       \
    const struct timespec* timeout, const sigset_t* mask), (count, readable, writable, failed, timeout, mask))    \
  X(epoll_wait, kEpoll, int, (int epoll, struct epoll_event* events, int capacity, int timeout),                \
    (epoll, events, capacity, timeout))                                                                          \
  X(epoll_pwait, kEpoll, int, (int epoll, struct epoll_event* events, int capacity, int timeout,                \
    const sigset_t* mask), (epoll, events, capacity, timeout, mask))                                             \
  X(epoll_pwait2, kEpoll, int, (int epoll, struct epoll_event* events, int capacity,                            \
    const struct timespec* timeout, const sigset_t* mask), (epoll, events, capacity, timeout, mask))             \
  X(sigtimedwait, kSigwait, int, (const sigset_t* set, siginfo_t* info, const struct timespec* timeout),        \
    (set, info, timeout))                                                                                        \
  X(sigwaitinfo, kSigwait, int, (const sigset_t* set, siginfo_t* info), (set, info))                             \
  X(read, kRead, ssize_t, (int fd, void* buffer, size_t size), (fd, buffer, size))                               \
  X(__read_chk, kRead, ssize_t, (int fd, void* buffer, size_t size, size_t length), (fd, buffer, size, length))  \
  X(readv, kRead, ssize_t, (int fd, const struct iovec* vectors, int count), (fd, vectors, count))               \
  X(recv, kReceive, ssize_t, (int fd, void* buffer, size_t size, int flags), (fd, buffer, size, flags))          \
  X(__recv_chk, kReceive, ssize_t, (int fd, void* buffer, size_t size, size_t length, int flags),                \
    (fd, buffer, size, length, flags))                                                                           \
  X(recvfrom, kReceive, ssize_t, (int fd, void* buffer, size_t size, int flags, struct sockaddr* from,           \
    socklen_t* from_size), (fd, buffer, size, flags, from, from_size))                                           \
  X(__recvfrom_chk, kReceive, ssize_t, (int fd, void* buffer, size_t size, size_t length, int flags,            \
    struct sockaddr* from, socklen_t* from_size), (fd, buffer, size, length, flags, from, from_size))            \
  X(recvmsg, kReceive, ssize_t, (int fd, struct msghdr* message, int flags), (fd, message, flags))               \
  X(accept, kAccept, int, (int fd, struct sockaddr* address, socklen_t* size), (fd, address, size))              \
  X(accept4, kAccept, int, (int fd, struct sockaddr* address, socklen_t* size, int flags),                       \
    (fd, address, size, flags))                                                                                  \
  X(recvmmsg, kReceive, int, (int fd, struct mmsghdr* messages, unsigned int count, int flags,                   \
    struct timespec* timeout), (fd, messages, count, flags, timeout))                                            \
  X(write, kSend, ssize_t, (int fd, const void* buffer, size_t size), (fd, buffer, size))                        \
  X(writev, kSend, ssize_t, (int fd, const struct iovec* vectors, int count), (fd, vectors, count))              \
  X(send, kSend, ssize_t, (int fd, const void* buffer, size_t size, int flags), (fd, buffer, size, flags))       \
  X(sendto, kSend, ssize_t, (int fd, const void* buffer, size_t size, int flags, const struct sockaddr* to,      \
    socklen_t to_size), (fd, buffer, size, flags, to, to_size))                                                  \
  X(sendmsg, kSend, ssize_t, (int fd, const struct msghdr* message, int flags), (fd, message, flags))            \
  X(sendmmsg, kSend, int, (int fd, struct mmsghdr* messages, unsigned int count, int flags),                     \
    (fd, messages, count, flags))                                                                                \
  X(semop, kSemaphore, int, (int set, struct sembuf* operations, size_t count), (set, operations, count))        \
  X(semtimedop, kSemaphore, int, (int set, struct sembuf* operations, size_t count,                              \
    const struct timespec* timeout), (set, operations, count, timeout))                                          \
  X(connect, kConnect, int, (int fd, const struct sockaddr* address, socklen_t size), (fd, address, size))     \
  X(io_getevents, kAio, int, (struct io_context* context, long minimum, long count, struct io_event* events,    \
    struct timespec* timeout), (context, minimum, count, events, timeout))                                       \
  X(io_pgetevents, kAio, int, (struct io_context* context, long minimum, long count, struct io_event* events,   \
    struct timespec* timeout, sigset_t* mask), (context, minimum, count, events, timeout, mask))

// Calls that may wait for long but that a scan handles as any other (the thread is stopped in
// them): wrapped only so that a forked child's deferred threads (live stats, periodic scans:
// allocator/engine.h) start before it waits in one, as a shell's subshell waits for its commands, a
// multiprocessing pool's workers for their queue's lock, a thread's creator for the thread. X(name,
// return type, parameter list, argument names, whether this call may wait): waitpid and its kin
// with WNOHANG never do, and they are what SIGCHLD handlers call.
#define HEAPKEEPER_WAITING_FUNCTIONS(X)                                                                          \
  X(wait, pid_t, (int* status), (status), true)                                                                  \
  X(waitpid, pid_t, (pid_t pid, int* status, int options), (pid, status, options), (options & WNOHANG) == 0)    \
  X(wait4, pid_t, (pid_t pid, int* status, int options, struct rusage* usage), (pid, status, options, usage),   \
    (options & WNOHANG) == 0)                                                                                    \
  X(waitid, int, (idtype_t type, id_t id, siginfo_t* info, int options), (type, id, info, options),             \
    (options & WNOHANG) == 0)                                                                                    \
  X(pause, int, (void), (), true)                                                                                \
  X(sigsuspend, int, (const sigset_t* mask), (mask), true)                                                       \
  X(sem_wait, int, (sem_t* semaphore), (semaphore), true)                                                        \
  X(sem_timedwait, int, (sem_t* semaphore, const struct timespec* end), (semaphore, end), true)                  \
  X(sem_clockwait, int, (sem_t* semaphore, clockid_t clock, const struct timespec* end), (semaphore, clock, end), \
    true)                                                                                                        \
  X(pthread_join, int, (pthread_t thread, void** result), (thread, result), true)
// clang-format on
