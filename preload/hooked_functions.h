// The one list of symbols libheapkeeper.so interposes (as memray's MEMRAY_HOOKED_FUNCTIONS).
//
// HEAPKEEPER_INTERPOSED_SYMBOLS lists every exported allocation symbol; start-up checks that the
// dynamic linker resolves each of them to this library (it does not when the program is linked
// statically, or when another preloaded library defines them first) and says which are not.
// HEAPKEEPER_SYMBOL_LOOKUP_FUNCTIONS are interposed too (and checked likewise).
// HEAPKEEPER_FORWARDED_FUNCTIONS lists the functions whose original heapkeeper calls after doing
// its part; it generates their pointer types and the table of originals.
#pragma once

// The lists keep one symbol family per line, which clang-format would pack differently.
// clang-format off

#define HEAPKEEPER_INTERPOSED_SYMBOLS(X)                                                                  \
  X(malloc) X(free) X(calloc) X(realloc) X(reallocarray) X(posix_memalign) X(aligned_alloc) X(memalign)   \
  X(valloc) X(pvalloc) X(malloc_usable_size) X(malloc_trim)                                              \
  X(mallocx) X(rallocx) X(xallocx) X(sallocx) X(dallocx) X(sdallocx) X(nallocx) X(mallctl)               \
  X(mallctlnametomib) X(mallctlbymib) X(malloc_stats_print)                                              \
  X(_Znwm) X(_Znam) X(_ZnwmRKSt9nothrow_t) X(_ZnamRKSt9nothrow_t) X(_ZnwmSt11align_val_t)                  \
  X(_ZnamSt11align_val_t) X(_ZnwmSt11align_val_tRKSt9nothrow_t) X(_ZnamSt11align_val_tRKSt9nothrow_t)     \
  X(_ZdlPv) X(_ZdaPv) X(_ZdlPvRKSt9nothrow_t) X(_ZdaPvRKSt9nothrow_t) X(_ZdlPvm) X(_ZdaPvm)               \
  X(_ZdlPvSt11align_val_t) X(_ZdaPvSt11align_val_t) X(_ZdlPvSt11align_val_tRKSt9nothrow_t)                \
  X(_ZdaPvSt11align_val_tRKSt9nothrow_t) X(_ZdlPvmSt11align_val_t) X(_ZdaPvmSt11align_val_t)              \
  X(pthread_create) X(pthread_sigmask) X(sigprocmask) X(signalfd)

// X(name, return type, parameter list)
#define HEAPKEEPER_FORWARDED_FUNCTIONS(X)                                                \
  X(pthread_create, int, (pthread_t*, const pthread_attr_t*, void* (*)(void*), void*)) \
  X(pthread_sigmask, int, (int, const sigset_t*, sigset_t*))                            \
  X(sigprocmask, int, (int, const sigset_t*, sigset_t*))                                \
  X(signalfd, int, (int, const sigset_t*, int))

// The dynamic linker's lookup functions. Through them, an interposed symbol asked of any handle
// resolves to heapkeeper's (symbol_lookup.cpp); their entry points are assembly
// (symbol_lookup_entry.S) so that the originals still see the program as their caller, which
// exists for x86-64 only.
#if defined(__x86_64__)
#define HEAPKEEPER_SYMBOL_LOOKUP_FUNCTIONS(X) X(dlsym) X(dlvsym)
#else
#define HEAPKEEPER_SYMBOL_LOOKUP_FUNCTIONS(X)
#endif
// The dynamic loader's unload: what it unmaps is recorded first, so that stacks through a closed
// library can still be named (allocator/unloaded_modules.h). dlopen is not interposed: glibc picks
// the search path and namespace from dlopen's caller, which a wrapper would replace by itself. Not
// routed through dlsym either (symbol_lookup.cpp): a dlclose the program looks up itself is glibc's,
// and what it unmaps goes unrecorded, rather than risking a loop through another wrapper of it.
#define HEAPKEEPER_LOADER_SYMBOLS(X) X(dlclose)
#define HEAPKEEPER_LOADER_FUNCTIONS(X) X(dlclose, int, (void*))

// Pipes and system calls (own_pipes.cpp): libunwind's validation pipe is two tokens and no pipe, a
// pipe heapkeeper's own code makes is moved out of the program's way, a seccomp filter the program
// installs is noted; the program's own calls pass through. Same shape as the lists above.
#define HEAPKEEPER_PIPE_SYMBOLS(X) X(pipe) X(pipe2) X(syscall) X(prctl)
#define HEAPKEEPER_PIPE_FUNCTIONS(X) \
  X(pipe, int, (int*)) X(pipe2, int, (int*, int)) X(syscall, long, (long, ...)) X(prctl, int, (int, ...))

// Calls that change a thread's credentials (credential_calls.cpp): heapkeeper's threads then take
// the same state; and those that enter a user namespace, which only a single-threaded process may.
// prctl and syscall, which can too, are in the list above. Same shape.
#define HEAPKEEPER_CREDENTIAL_SYMBOLS(X)                                                                \
  X(capset) X(setuid) X(setgid) X(seteuid) X(setegid) X(setreuid) X(setregid) X(setresuid) X(setresgid) \
  X(setgroups) X(initgroups) X(unshare) X(setns)
#define HEAPKEEPER_CREDENTIAL_FUNCTIONS(X)                                                                   \
  X(capset, int, (void*, void*)) X(setuid, int, (uid_t)) X(setgid, int, (gid_t)) X(seteuid, int, (uid_t))    \
  X(setegid, int, (gid_t)) X(setreuid, int, (uid_t, uid_t)) X(setregid, int, (gid_t, gid_t))                \
  X(setresuid, int, (uid_t, uid_t, uid_t)) X(setresgid, int, (gid_t, gid_t, gid_t))                          \
  X(setgroups, int, (size_t, const gid_t*)) X(initgroups, int, (const char*, gid_t)) X(unshare, int, (int))     \
  X(setns, int, (int, int))

// The exec family (exec_calls.cpp): an exec waits for a scan in progress. glibc's execvp, execl and
// the rest call its internal execve, so each is its own wrapper (execl, execle and execlp pass
// their arguments on to the wrapped execv, execve and execvp). Not in check_interposition's list:
// a dlsym each at every process's start for calls most processes make once, if at all.
#define HEAPKEEPER_EXEC_FUNCTIONS(X)                                                                          \
  X(execve, int, (const char*, char* const*, char* const*)) X(execv, int, (const char*, char* const*))     \
  X(execvp, int, (const char*, char* const*)) X(execvpe, int, (const char*, char* const*, char* const*))  \
  X(execveat, int, (int, const char*, char* const*, char* const*, int))                                   \
  X(fexecve, int, (int, char* const*, char* const*))

// Descriptor moves (descriptor_calls.cpp): the program putting a file of its own on 2, or on the
// number of heapkeeper's copy of its start-up stderr, makes heapkeeper give that copy up. Not in
// check_interposition's list, like the exec family. Same shape as the lists above.
#define HEAPKEEPER_DESCRIPTOR_FUNCTIONS(X) X(dup2, int, (int, int)) X(dup3, int, (int, int, int))

// The immediate exits (immediate_exit.cpp), which remove the process's live-stats segment first.
#define HEAPKEEPER_EXIT_SYMBOLS(X) X(_exit) X(_Exit)

// The longjmp family (blocking_calls.cpp): a jump out of a signal handler that interrupted a
// wrapped blocking call ends that call first. Same shape as the lists above.
#define HEAPKEEPER_JUMP_FUNCTIONS(X)                                                                     \
  X(longjmp, void, (__jmp_buf_tag*, int)) X(_longjmp, void, (__jmp_buf_tag*, int))                       \
  X(siglongjmp, void, (__jmp_buf_tag*, int)) X(__longjmp_chk, void, (__jmp_buf_tag*, int))

// Calls that hand the kernel a pointer the program may keep nowhere else (collector/kernel_roots.h):
// interposed so that the pointers stay roots while registered. Same shape as the lists above.
// io_submit, io_cancel and io_destroy are libaio's (a program links it; its types are opaque here,
// and its io_getevents is a blocking call, blocking_functions.h).
struct io_context;
struct iocb;
struct io_event;
#define HEAPKEEPER_KERNEL_ROOT_SYMBOLS(X)                                                                 \
  X(epoll_create) X(epoll_create1) X(epoll_ctl) X(timer_create) X(timer_delete) X(sigaltstack)            \
  X(aio_read) X(aio_write) X(aio_fsync) X(aio_return) X(lio_listio)                                      \
  X(aio_read64) X(aio_write64) X(aio_fsync64) X(aio_return64) X(lio_listio64)                            \
  X(io_submit) X(io_cancel) X(io_destroy)

#define HEAPKEEPER_KERNEL_ROOT_FUNCTIONS(X)                                                    \
  X(epoll_create, int, (int))                                                                  \
  X(epoll_create1, int, (int))                                                                 \
  X(epoll_ctl, int, (int, int, int, struct epoll_event*))                                      \
  X(timer_create, int, (clockid_t, struct sigevent*, timer_t*))                                \
  X(timer_delete, int, (timer_t))                                                              \
  X(sigaltstack, int, (const stack_t*, stack_t*))                                              \
  X(aio_read, int, (struct aiocb*))                                                            \
  X(aio_write, int, (struct aiocb*))                                                           \
  X(aio_fsync, int, (int, struct aiocb*))                                                      \
  X(aio_return, ssize_t, (struct aiocb*))                                                      \
  X(lio_listio, int, (int, struct aiocb* const*, int, struct sigevent*))                       \
  X(aio_read64, int, (struct aiocb64*))                                                        \
  X(aio_write64, int, (struct aiocb64*))                                                       \
  X(aio_fsync64, int, (int, struct aiocb64*))                                                  \
  X(aio_return64, ssize_t, (struct aiocb64*))                                                  \
  X(lio_listio64, int, (int, struct aiocb64* const*, int, struct sigevent*))                   \
  X(io_submit, int, (struct io_context*, long, struct iocb**))                                 \
  X(io_cancel, int, (struct io_context*, struct iocb*, struct io_event*))                      \
  X(io_destroy, int, (struct io_context*))
// clang-format on
