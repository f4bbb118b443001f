/* thread_exit_during_scan: threads keep starting and exiting — four at a time, created and joined,
 * for 1.5 s — while periodic scans run every 10 ms. Each thread allocates and frees a window of
 * blocks; nothing leaks. A scan must cope with threads that finish while it runs, and with the
 * memory they release on the way out (a thread's exit unmaps its libunwind trace cache; glibc
 * trims its cache of thread stacks): the program must exit normally, with no false leak.
 *
 * Usage: thread_exit_during_scan [MILLISECONDS]   (default 1500)
 *
 * corpus: expect direct=0 indirect=0 bytes=0
 * corpus: env HEAPKEEPER_SCAN_INTERVAL=10ms
 * corpus: stderr-absent heapkeeper\[\d+\]: scan \d+:
 * corpus: json scans >= 10
 * corpus: valgrind-args 300
 */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "corpus.h"

#define WINDOW 32

static long elapsed_ms(const struct timespec* since) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

static void* worker(void* unused) {
  void* window[WINDOW];
  for (int i = 0; i < WINDOW; ++i) window[i] = malloc(64 + (size_t)i);
  for (int r = 0; r < 2000; ++r) {
    free(window[r % WINDOW]);
    window[r % WINDOW] = malloc(64 + (size_t)(r % 100));
  }
  for (int i = 0; i < WINDOW; ++i) free(window[i]);
  return unused;
}

int main(int argc, char** argv) {
  const long milliseconds = argc > 1 ? strtol(argv[1], NULL, 10) : 1500;
  struct timespec started;
  clock_gettime(CLOCK_MONOTONIC, &started);
  do {
    pthread_t threads[4];
    for (int i = 0; i < 4; ++i) {
      if (pthread_create(&threads[i], NULL, worker, NULL) != 0) return 2;
    }
    for (int i = 0; i < 4; ++i) pthread_join(threads[i], NULL);
  } while (elapsed_ms(&started) < milliseconds);
  return 0;
}
