/* Allocation from signal handlers while the main thread churns the heap.
 *
 * Usage: signal_alloc [SIGNALS]
 * A SIGUSR1/SIGALRM handler mallocs, fills, checks and frees a few small blocks. A sender thread
 * delivers SIGUSR1 to the main thread SIGNALS times, waiting for each to be handled (so the count
 * is exact), while an interval timer raises SIGALRM; meanwhile the main thread mallocs, reallocs
 * and frees. Under heapkeeper a handler that interrupts a hook must be served without deadlock.
 *
 * Without heapkeeper the program runs on glibc's malloc, which is not async-signal-safe. To keep
 * that baseline run deadlock-free in practice, the handler only uses sizes the main thread never
 * asks for, warmed into glibc's per-thread cache beforehand (cache hits take no lock).
 * Output is deterministic: the SIGUSR1 count, whether SIGALRM arrived, checksums, the error count.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static volatile sig_atomic_t usr1_handled;
static volatile sig_atomic_t alarms_handled;
static volatile sig_atomic_t handler_errors;
static volatile int sender_done;
static pthread_t main_thread;

static const size_t kHandlerSizes[] = {24, 40, 56};

static void handler(int signal_number) {
  for (size_t i = 0; i < sizeof kHandlerSizes / sizeof kHandlerSizes[0]; ++i) {
    unsigned char* p = malloc(kHandlerSizes[i]);
    if (p == NULL) {
      ++handler_errors;
      continue;
    }
    memset(p, 0xA5 ^ (int)i, kHandlerSizes[i]);
    for (size_t k = 0; k < kHandlerSizes[i]; ++k) {
      if (p[k] != (unsigned char)(0xA5 ^ (int)i)) ++handler_errors;
    }
    free(p);
  }
  if (signal_number == SIGUSR1)
    ++usr1_handled;
  else
    ++alarms_handled;
}

static void* sender(void* argument) {
  const long count = (long)(intptr_t)argument;
  struct timespec pause = {0, 1000};
  for (long i = 0; i < count; ++i) {
    const sig_atomic_t before = usr1_handled;
    pthread_kill(main_thread, SIGUSR1);
    while (usr1_handled == before) nanosleep(&pause, NULL);
  }
  __atomic_store_n(&sender_done, 1, __ATOMIC_RELEASE);
  return NULL;
}

int main(int argc, char** argv) {
  const long signals = argc > 1 ? strtol(argv[1], NULL, 10) : 5000;
  main_thread = pthread_self();

  /* Warm glibc's cache for the handler's sizes (see the opening comment). */
  for (size_t i = 0; i < sizeof kHandlerSizes / sizeof kHandlerSizes[0]; ++i) free(malloc(kHandlerSizes[i]));

  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  sigaddset(&action.sa_mask, SIGUSR1);
  sigaddset(&action.sa_mask, SIGALRM);
  action.sa_flags = SA_RESTART;
  if (sigaction(SIGUSR1, &action, NULL) != 0 || sigaction(SIGALRM, &action, NULL) != 0) {
    perror("sigaction");
    return 2;
  }
  struct itimerval timer = {{0, 200}, {0, 200}};
  if (setitimer(ITIMER_REAL, &timer, NULL) != 0) {
    perror("setitimer");
    return 2;
  }
  /* The sender inherits a mask blocking both signals, so every one is handled on the main thread. */
  sigset_t both, previous;
  sigemptyset(&both);
  sigaddset(&both, SIGUSR1);
  sigaddset(&both, SIGALRM);
  pthread_sigmask(SIG_BLOCK, &both, &previous);
  pthread_t sender_thread;
  if (pthread_create(&sender_thread, NULL, sender, (void*)(intptr_t)signals) != 0) {
    fprintf(stderr, "pthread_create failed\n");
    return 2;
  }
  pthread_sigmask(SIG_SETMASK, &previous, NULL);

  enum { kSlots = 256 };
  unsigned char* slots[kSlots] = {0};
  size_t sizes[kSlots] = {0};
  uint32_t state = 12345;
  uint64_t checksum = 0;
  long rounds = 0;
  while (!__atomic_load_n(&sender_done, __ATOMIC_ACQUIRE) || alarms_handled == 0 || rounds < 200000) {
    state = state * 1664525u + 1013904223u;
    const int slot = (int)((state >> 8) % kSlots);
    const size_t size = 128 + (state >> 12) % 4000; /* never the handler's sizes */
    if (slots[slot] == NULL) {
      slots[slot] = malloc(size);
      if (slots[slot] == NULL) abort();
      memset(slots[slot], (int)(size & 0xff), size);
      sizes[slot] = size;
    } else if (state & 0x10000) {
      unsigned char* moved = realloc(slots[slot], size);
      if (moved == NULL) abort();
      if (moved[0] != (unsigned char)(sizes[slot] & 0xff)) ++handler_errors;
      memset(moved, (int)(size & 0xff), size);
      slots[slot] = moved;
      sizes[slot] = size;
    } else {
      if (slots[slot][sizes[slot] - 1] != (unsigned char)(sizes[slot] & 0xff)) ++handler_errors;
      free(slots[slot]);
      slots[slot] = NULL;
    }
    if (rounds < 200000) checksum = checksum * 1099511628211ull + size;
    ++rounds;
  }
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  pthread_join(sender_thread, NULL);
  for (int i = 0; i < kSlots; ++i) free(slots[i]);

  printf("SIGUSR1 handled: %ld of %ld\n", (long)usr1_handled, signals);
  printf("SIGALRM handled: %s\n", alarms_handled > 0 ? "yes" : "no");
  printf("checksum of the first 200000 rounds: %016llx\n", (unsigned long long)checksum);
  printf("errors: %d\n", (int)handler_errors);
  return handler_errors == 0 && usr1_handled == signals ? 0 : 1;
}
