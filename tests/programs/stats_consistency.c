/* Checks heapkeeper_heap_stats against allocations the program makes itself.
 *
 * Usage: stats_consistency [N] [K]
 * Between two calls of heapkeeper_heap_stats (looked up with dlsym, as heapkeeper.h advises) the
 * program makes exactly N mallocs of 100 bytes and frees all but K of them; nothing else runs in
 * between and no other thread exists. The deltas must be exact: total_allocations +N,
 * total_frees +(N-K), live_blocks +K, live_bytes +100*K. Prints one line per figure and exits 0
 * when all match, 1 when one does not, 4 when not running under heapkeeper.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "heapkeeper/heapkeeper.h"

typedef void (*stats_function)(struct heapkeeper_heap_stats*);

static int check(const char* name, unsigned long long got, unsigned long long expected) {
  printf("%s delta: %llu (expected %llu) %s\n", name, got, expected, got == expected ? "ok" : "MISMATCH");
  return got == expected;
}

int main(int argc, char** argv) {
  const long n = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
  const long k = argc > 2 ? strtol(argv[2], NULL, 10) : 1234;
  if (n <= 0 || k < 0 || k > n) {
    fprintf(stderr, "usage: stats_consistency [N] [K<=N]\n");
    return 2;
  }
  stats_function heap_stats = (stats_function)dlsym(RTLD_DEFAULT, "heapkeeper_heap_stats");
  if (heap_stats == NULL) {
    printf("heapkeeper_heap_stats not found: not running under heapkeeper\n");
    return 4;
  }
  void** blocks = calloc((size_t)n, sizeof *blocks);
  if (blocks == NULL) return 3;

  struct heapkeeper_heap_stats before, after;
  heap_stats(&before);
  for (long i = 0; i < n; ++i) {
    blocks[i] = malloc(100);
    if (blocks[i] == NULL) abort();
  }
  for (long i = k; i < n; ++i) free(blocks[i]);
  heap_stats(&after);

  int ok = 1;
  ok &= check("total_allocations", after.total_allocations - before.total_allocations, (unsigned long long)n);
  ok &= check("total_frees", after.total_frees - before.total_frees, (unsigned long long)(n - k));
  ok &= check("live_blocks", after.live_blocks - before.live_blocks, (unsigned long long)k);
  ok &= check("live_bytes", after.live_bytes - before.live_bytes, (unsigned long long)(100 * k));
  printf("live_blocks == total_allocations - total_frees: %s\n",
         after.live_blocks == after.total_allocations - after.total_frees ? "yes" : "no");
  ok &= after.live_blocks == after.total_allocations - after.total_frees;
  printf("threads_seen >= 1: %s\n", after.threads_seen >= 1 ? "yes" : "no");
  ok &= after.threads_seen >= 1;

  for (long i = 0; i < k; ++i) free(blocks[i]);
  free(blocks);
  return ok ? 0 : 1;
}
