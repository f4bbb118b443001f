/* A SIGPROF handler calling read() (async-signal-safe) while threads start and allocate.
 *
 * Usage: handler_read [ROUNDS]
 * heapkeeper wraps read (collector/blocking_call.h), and the wrapper registers a thread that has
 * not registered yet. A new thread registers itself first thing, and that registration allocates
 * (pthread_getattr_np's calloc, inside jemalloc with an arena's lock held): a handler that
 * interrupted it there and called read registered the thread again, and waited for that lock for
 * ever (a helper's adversarial round: 17 hangs and 9 crashes in 30 runs). ROUNDS rounds of 32
 * threads (default 20), each making 2,000 allocations, under a 50 us profiling timer whose handler
 * reads a non-blocking pipe; alarm() ends a hung run. Output is deterministic.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static int pipe_fds[2];

static void on_profile(int signo) {
  (void)signo;
  const int saved_errno = errno;
  char byte;
  if (read(pipe_fds[0], &byte, 1) < 0 && errno != EAGAIN) _exit(3);
  errno = saved_errno;
}

static void* allocate(void* argument) {
  (void)argument;
  for (int k = 0; k < 2000; ++k) {
    void* volatile block = malloc(16 + k % 64);
    free(block);
  }
  return NULL;
}

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? atoi(argv[1]) : 20;
  if (pipe2(pipe_fds, O_NONBLOCK) != 0) return 1;
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_profile;
  action.sa_flags = SA_RESTART;
  if (sigaction(SIGPROF, &action, NULL) != 0) return 1;
  const struct itimerval every_50us = {{0, 50}, {0, 50}};
  if (setitimer(ITIMER_PROF, &every_50us, NULL) != 0) return 1;
  alarm(20);
  for (int round = 0; round < rounds; ++round) {
    pthread_t threads[32];
    for (int i = 0; i < 32; ++i) {
      if (pthread_create(&threads[i], NULL, allocate, NULL) != 0) return 1;
    }
    for (int i = 0; i < 32; ++i) pthread_join(threads[i], NULL);
  }
  const struct itimerval stop = {{0, 0}, {0, 0}};
  setitimer(ITIMER_PROF, &stop, NULL);
  printf("%d rounds of 32 threads\n", rounds);
  return 0;
}
