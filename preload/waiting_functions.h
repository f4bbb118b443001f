// Calls in which a program waits that heapkeeper does not otherwise wrap: their wrappers only say
// that the program lives on (its deferred threads start, allocator/deferred_threads.h), then call
// the original. Unlike blocking_functions.h, a scan does not treat a thread in one of these as
// parked: it stops such a thread as it stops any other. X(name, return type, parameter list,
// argument names). Not the lock primitives (sem_wait, futexes): interpreters take their locks
// through them all the time, waiting or not.
#pragma once

// clang-format off
#define HEAPKEEPER_WAITING_FUNCTIONS(X)                                                                      \
  X(pause, int, (void), ())                                                                                  \
  X(sigsuspend, int, (const sigset_t* mask), (mask))                                                         \
  X(sigwait, int, (const sigset_t* set, int* signal_number), (set, signal_number))                          \
  X(wait, pid_t, (int* status), (status))                                                                    \
  X(wait3, pid_t, (int* status, int options, struct rusage* usage), (status, options, usage))                \
  X(waitpid, pid_t, (pid_t pid, int* status, int options), (pid, status, options))                          \
  X(wait4, pid_t, (pid_t pid, int* status, int options, struct rusage* usage), (pid, status, options, usage)) \
  X(waitid, int, (idtype_t type, id_t id, siginfo_t* info, int options), (type, id, info, options))          \
  X(pthread_join, int, (pthread_t thread, void** result), (thread, result))
// clang-format on

namespace heapkeeper::preload {
// Looks every original up once, at start-up.
void resolve_waiting_originals();
}  // namespace heapkeeper::preload
