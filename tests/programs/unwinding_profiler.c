/* A sampling profiler that unwinds with libunwind from its SIGPROF handler, as gperftools' does.
 *
 * Usage: unwinding_profiler [ROUNDS [PERIOD_US]]
 * The program links libunwind.so.8, the copy heapkeeper unwinds with. libunwind blocks every
 * signal while it holds one of its locks (its register-state cache, its memory pools) or walks the
 * loader's list; its unwinds from a handler rely on that, since those locks are not recursive.
 * Inside heapkeeper's own unwinds those blocks must stay real for such a program
 * (allocator/unwinder_masks.h): a SIGPROF landing while heapkeeper's capture holds one of the
 * locks would otherwise have its handler wait for it forever (it did, every run, when they were
 * elided whatever the program linked). Each round two threads, each with a
 * timer firing every 50 us at it, allocate from 64 call sites at varying depths (new threads,
 * new stacks: heapkeeper's captures go through libunwind's look-ups). alarm() ends a hung run.
 * Output is deterministic: the rounds and the errors, which must be 0 (the samples go to stderr).
 */
#define _GNU_SOURCE
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "call_sites.h"
#include "thread_timer.h"

static volatile long samples;
static volatile long frames;

static void on_prof(int signo) {
  (void)signo;
  unw_context_t context;
  unw_cursor_t cursor;
  int depth = 0;
  unw_getcontext(&context);
  if (unw_init_local(&cursor, &context) == 0)
    while (depth < 64 && unw_step(&cursor) > 0) depth++;
  __atomic_add_fetch(&samples, 1, __ATOMIC_RELAXED);
  __atomic_add_fetch(&frames, depth, __ATOMIC_RELAXED);
}

static volatile int errors;
static long period_ns = 50000; /* the profiler's sampling period: 50 us unless PERIOD_US says */

static void* worker(void* argument) {
  const int seed = (int)(long)argument;
  timer_t timer;
  if (start_thread_timer(SIGPROF, period_ns, &timer) != 0) {
    __atomic_add_fetch(&errors, 1, __ATOMIC_RELAXED);
    return NULL;
  }
  for (int pass = 0; pass < 20; pass++)
    for (int i = 0; i < kSiteCount; i++) free(kSites[(i + seed * 13) % kSiteCount]((i + pass) % 6, 16));
  stop_thread_timer(timer);
  return NULL;
}

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? atoi(argv[1]) : 10;
  if (argc > 2 && atol(argv[2]) > 0 && atol(argv[2]) < 1000000) period_ns = atol(argv[2]) * 1000;
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_prof;
  action.sa_flags = SA_RESTART;
  sigaction(SIGPROF, &action, NULL);
  alarm(20);
  for (int round = 0; round < rounds; round++) {
    pthread_t threads[2];
    for (int k = 0; k < 2; k++)
      if (pthread_create(&threads[k], NULL, worker, (void*)(long)(round * 2 + k)) != 0) errors++;
    for (int k = 0; k < 2; k++) pthread_join(threads[k], NULL);
  }
  alarm(0);
  printf("rounds %d, errors: %d\n", rounds, errors);
  fprintf(stderr, "%ld samples, %ld frames\n", samples, frames);
  return errors == 0 ? 0 : 1;
}
