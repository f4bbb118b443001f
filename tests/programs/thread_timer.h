/* A SIGPROF-style timer aimed at the calling thread alone (SIGEV_THREAD_ID), as a sampling
 * profiler arms one per thread: test programs whose signal handlers must interrupt one thread's
 * allocations or blocking calls. */
#ifndef HEAPKEEPER_TESTS_THREAD_TIMER_H
#define HEAPKEEPER_TESTS_THREAD_TIMER_H

#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Creates a timer delivering `signal_number` to the calling thread every `period_ns` and arms
 * it; 0, or -1 when it cannot be made. stop_thread_timer disarms and deletes it. */
static inline int start_thread_timer(int signal_number, long period_ns, timer_t* timer) {
  struct sigevent event;
  memset(&event, 0, sizeof event);
  event.sigev_notify = SIGEV_THREAD_ID;
  event.sigev_signo = signal_number;
  event._sigev_un._tid = gettid();
  if (timer_create(CLOCK_MONOTONIC, &event, timer) != 0) return -1;
  const struct itimerspec every = {{0, period_ns}, {0, period_ns}};
  return timer_settime(*timer, 0, &every, NULL);
}

static inline void stop_thread_timer(timer_t timer) {
  const struct itimerspec never = {{0, 0}, {0, 0}};
  timer_settime(timer, 0, &never, NULL);
  timer_delete(timer);
}

#endif
