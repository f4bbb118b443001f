/* Signals that allocate, on several threads at once, while those threads churn the heap.
 *
 * Usage: signal_storm [ROUNDS] [WORKERS]      (defaults 300000 4)
 *
 * WORKERS threads each run ROUNDS rounds of malloc, realloc and free; meanwhile a sender thread
 * keeps one SIGUSR1 pending on every worker (it sends the next as soon as the previous one has
 * been handled), and an interval timer raises SIGALRM every 300 us. Both handlers malloc, fill,
 * check and free a few small blocks. Under heapkeeper a handler that interrupts an allocation must
 * be served without deadlock, and the collector's own suspend signal (scripts/stress.sh turns
 * periodic scans on) arrives on top.
 *
 * Without heapkeeper the program runs on glibc's malloc, which is not async-signal-safe; to keep
 * that baseline run deadlock-free in practice the handlers only ask for sizes the workers never
 * use, warmed into each worker's per-thread cache first (cache hits take no lock), and only the
 * workers take the signals (the other threads block them).
 * How many signals arrive depends on scheduling, so those counts go to stderr; stdout (checksums,
 * whether every sent SIGUSR1 was handled and SIGALRM arrived, the error count) is deterministic.
 * Hold point: 500 blocks of 200 bytes made by the main thread (see stress_common.h).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "stress_common.h"

enum { kMaxWorkers = 32 };
static const size_t kHandlerSizes[] = {24, 40, 56};

static pthread_t g_workers[kMaxWorkers];
static volatile sig_atomic_t g_usr1_handled[kMaxWorkers];
static long g_usr1_sent[kMaxWorkers];
static int g_worker_finished[kMaxWorkers]; /* set by the worker: send it nothing more */
static int g_sender_stopped[kMaxWorkers];  /* set by the sender: g_usr1_sent[w] is final */
static int g_workers_done;
static volatile sig_atomic_t g_alarms_handled;
static volatile sig_atomic_t g_handler_errors;
static __thread int t_worker_index = -1;

static void handler(int signal_number) {
  for (size_t i = 0; i < sizeof kHandlerSizes / sizeof kHandlerSizes[0]; ++i) {
    unsigned char* p = malloc(kHandlerSizes[i]);
    if (p == NULL) {
      ++g_handler_errors;
      continue;
    }
    memset(p, 0xA5 ^ (int)i, kHandlerSizes[i]);
    for (size_t k = 0; k < kHandlerSizes[i]; ++k) {
      if (p[k] != (unsigned char)(0xA5 ^ (int)i)) ++g_handler_errors;
    }
    free(p);
  }
  if (signal_number == SIGUSR1 && t_worker_index >= 0)
    ++g_usr1_handled[t_worker_index];
  else if (signal_number == SIGALRM)
    ++g_alarms_handled;
  else
    ++g_handler_errors; /* SIGUSR1 on a thread that should have blocked it */
}

/* Keeps one SIGUSR1 pending on each worker until it says it is finished. */
static void* sender(void* argument) {
  const int workers = (int)(intptr_t)argument;
  while (__atomic_load_n(&g_workers_done, __ATOMIC_ACQUIRE) < workers) {
    for (int w = 0; w < workers; ++w) {
      if (__atomic_load_n(&g_sender_stopped[w], __ATOMIC_RELAXED)) continue;
      if (__atomic_load_n(&g_worker_finished[w], __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&g_sender_stopped[w], 1, __ATOMIC_RELEASE);
        continue;
      }
      if (g_usr1_handled[w] != __atomic_load_n(&g_usr1_sent[w], __ATOMIC_RELAXED)) continue; /* one is pending */
      if (pthread_kill(g_workers[w], SIGUSR1) == 0)
        __atomic_store_n(&g_usr1_sent[w], g_usr1_sent[w] + 1, __ATOMIC_RELEASE);
    }
    /* A short sleep, not sched_yield: the scheduler favours a thread that wakes from sleep, so
     * the sender keeps up with the busy workers on a machine with fewer cores than threads. */
    struct timespec pause = {0, 20 * 1000};
    nanosleep(&pause, NULL);
  }
  return NULL;
}

struct worker_result {
  uint64_t checksum;
};

static struct worker_result g_results[kMaxWorkers];

static long g_rounds;

static void* worker_main(void* argument) {
  const int index = (int)(intptr_t)argument;
  t_worker_index = index;
  /* Warm this thread's cache for the handler's sizes (see the opening comment). */
  for (size_t i = 0; i < sizeof kHandlerSizes / sizeof kHandlerSizes[0]; ++i) free(malloc(kHandlerSizes[i]));
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGUSR1);
  sigaddset(&signals, SIGALRM);
  pthread_sigmask(SIG_UNBLOCK, &signals, NULL);

  enum { kSlots = 128 };
  unsigned char* slots[kSlots] = {0};
  size_t sizes[kSlots] = {0};
  uint32_t state = 12345u + (uint32_t)index * 7919u;
  uint64_t checksum = 0;
  long rounds = 0;
  while (rounds < g_rounds || g_alarms_handled == 0) {
    state = state * 1664525u + 1013904223u;
    const int slot = (int)((state >> 8) % kSlots);
    const size_t size = 128 + (state >> 12) % 4000; /* never the handlers' sizes */
    if (slots[slot] == NULL) {
      slots[slot] = malloc(size);
      if (slots[slot] == NULL) abort();
      memset(slots[slot], (int)(size & 0xff), size);
      sizes[slot] = size;
    } else if (state & 0x10000) {
      unsigned char* moved = realloc(slots[slot], size);
      if (moved == NULL) abort();
      if (moved[0] != (unsigned char)(sizes[slot] & 0xff)) ++g_handler_errors;
      memset(moved, (int)(size & 0xff), size);
      slots[slot] = moved;
      sizes[slot] = size;
    } else {
      if (slots[slot][sizes[slot] - 1] != (unsigned char)(sizes[slot] & 0xff)) ++g_handler_errors;
      free(slots[slot]);
      slots[slot] = NULL;
    }
    if (rounds < g_rounds) checksum = checksum * 1099511628211ull + size;
    ++rounds;
  }
  /* Tell the sender to stop, wait until it has, then for the last SIGUSR1 it sent here to be
   * handled: only then may this thread block the signal (a blocked one would stay pending). */
  __atomic_store_n(&g_worker_finished[index], 1, __ATOMIC_RELEASE);
  while (!__atomic_load_n(&g_sender_stopped[index], __ATOMIC_ACQUIRE)) sched_yield();
  while (g_usr1_handled[index] != __atomic_load_n(&g_usr1_sent[index], __ATOMIC_ACQUIRE)) sched_yield();
  pthread_sigmask(SIG_BLOCK, &signals, NULL);
  __atomic_fetch_add(&g_workers_done, 1, __ATOMIC_ACQ_REL);
  for (int i = 0; i < kSlots; ++i) free(slots[i]);
  g_results[index].checksum = checksum;
  return NULL;
}

int main(int argc, char** argv) {
  g_rounds = argc > 1 ? strtol(argv[1], NULL, 10) : 300000;
  const int workers = argc > 2 ? atoi(argv[2]) : 4;
  if (g_rounds <= 0 || workers <= 0 || workers > kMaxWorkers) {
    fprintf(stderr, "usage: signal_storm [ROUNDS] [WORKERS 1..%d]\n", kMaxWorkers);
    return 2;
  }
  void* held[500];
  stress_hold_blocks(held, 500, 200, 5);
  stress_hold(500, 500 * 200);
  size_t corrupt = stress_release_blocks(held, 500, 200, 5);

  /* Only the workers take the signals: every other thread (this one, the sender) blocks them. */
  sigset_t both;
  sigemptyset(&both);
  sigaddset(&both, SIGUSR1);
  sigaddset(&both, SIGALRM);
  pthread_sigmask(SIG_BLOCK, &both, NULL);
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = handler;
  action.sa_mask = both;
  action.sa_flags = SA_RESTART;
  if (sigaction(SIGUSR1, &action, NULL) != 0 || sigaction(SIGALRM, &action, NULL) != 0) {
    perror("sigaction");
    return 2;
  }
  for (int w = 0; w < workers; ++w) {
    if (pthread_create(&g_workers[w], NULL, worker_main, (void*)(intptr_t)w) != 0) return 3;
  }
  struct itimerval timer = {{0, 300}, {0, 300}};
  if (setitimer(ITIMER_REAL, &timer, NULL) != 0) {
    perror("setitimer");
    return 2;
  }
  pthread_t sender_thread;
  if (pthread_create(&sender_thread, NULL, sender, (void*)(intptr_t)workers) != 0) return 3;
  for (int w = 0; w < workers; ++w) pthread_join(g_workers[w], NULL);
  pthread_join(sender_thread, NULL);
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);

  long handled = 0, sent = 0;
  uint64_t total = 0;
  for (int w = 0; w < workers; ++w) {
    printf("worker %d: checksum of %ld rounds %016llx\n", w, g_rounds, (unsigned long long)g_results[w].checksum);
    fprintf(stderr, "signal_storm: worker %d handled %ld SIGUSR1\n", w, (long)g_usr1_handled[w]);
    handled += g_usr1_handled[w];
    sent += g_usr1_sent[w];
    total += g_results[w].checksum;
  }
  fprintf(stderr, "signal_storm: %ld SIGUSR1 sent, %ld handled, %ld SIGALRM handled\n", sent, handled,
          (long)g_alarms_handled);
  printf("every SIGUSR1 sent was handled: %s\n", handled == sent && sent > 0 ? "yes" : "no");
  printf("SIGALRM handled: %s\n", g_alarms_handled > 0 ? "yes" : "no");
  printf("total checksum %016llx, errors %d, held blocks intact: %s\n", (unsigned long long)total,
         (int)g_handler_errors, corrupt == 0 ? "yes" : "no");
  return g_handler_errors == 0 && handled == sent && sent > 0 && corrupt == 0 ? 0 : 1;
}
