/* thread_start_during_scan: new threads keep starting while periodic scans run every 10 ms. Each
 * allocates and frees hard for 30 ms, holding a window of 64 blocks in a local array, then blocks
 * on a condition variable until the process exits. Nothing ever leaks, so no periodic scan may
 * report anything — also when a thread starts (and makes its first allocation) while a scan is
 * under way — and the exit scan finds every window reachable from its thread's stack.
 *
 * Usage: thread_start_during_scan [THREADS]   (default 100, one every 3 to 9 ms)
 *
 * corpus: expect direct=0 indirect=0 bytes=0
 * corpus: env HEAPKEEPER_SCAN_INTERVAL=10ms
 * corpus: stderr-absent heapkeeper\[\d+\]: scan \d+:
 * corpus: json scans >= 10
 * corpus: valgrind-args 10
 */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "corpus.h"

#define WINDOW 64

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_never = PTHREAD_COND_INITIALIZER;

static long elapsed_ms(const struct timespec* since) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

static void* worker(void* unused) {
  void* volatile window[WINDOW] = {0};
  struct timespec started;
  clock_gettime(CLOCK_MONOTONIC, &started);
  for (unsigned r = 0; elapsed_ms(&started) < 30; ++r) {
    const unsigned k = (r * 7919u) % WINDOW;
    free(window[k]);
    window[k] = malloc(64 + r % 500);
  }
  pthread_mutex_lock(&g_lock);
  for (;;) pthread_cond_wait(&g_never, &g_lock); /* until the process exits */
  return unused;
}

int main(int argc, char** argv) {
  const int count = argc > 1 ? atoi(argv[1]) : 100;
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setstacksize(&attributes, 256 * 1024);
  for (int i = 0; i < count; ++i) {
    pthread_t thread;
    if (pthread_create(&thread, &attributes, worker, NULL) != 0) return 2;
    struct timespec pause = {0, (3 + i % 7) * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  struct timespec settle = {0, 100 * 1000 * 1000}; /* the last threads finish their churn */
  nanosleep(&settle, NULL);
  return 0;
}
