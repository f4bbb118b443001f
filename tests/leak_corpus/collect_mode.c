/* collect_mode: with HEAPKEEPER_MODE=collect and scans every 200 ms, leaks 1 MiB every 100 ms
 * for 3 s (30 MiB in all) while keeping blocks reachable only through each kind of root — a
 * global list, an interior pointer, TLS, an anonymous mapping, another thread's stack. The
 * collector must free the lost blocks (live heap far below what was leaked: under a third) and
 * none of the reachable ones (each still live, with its contents intact, at the end).
 *
 * Which of the last blocks are still unreclaimed at exit depends on timing, hence the ranges.
 * Prints "collect_mode: ok" on success; exits 1 on a failed check, 4 when not under heapkeeper.
 *
 * corpus: expect direct=0..10 indirect=0 bytes=0..10485760
 * corpus: env HEAPKEEPER_MODE=collect
 * corpus: env HEAPKEEPER_SCAN_INTERVAL=200ms
 * corpus: stdout-contains collect_mode: ok
 * corpus: json scans >= 5
 * corpus: json scan.reclaimed_blocks_total > 0
 * corpus: json collected.blocks > 0
 * corpus: valgrind skip
 * corpus: lsan skip
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "corpus.h"
#include "heapkeeper/heapkeeper.h"

#define LEAK_BYTES (1024 * 1024)
#define LEAK_COUNT 30
#define LIST_LENGTH 50
#define NODE_BYTES 128

typedef void (*stats_function)(struct heapkeeper_heap_stats*);
typedef int (*block_info_function)(const void*, struct heapkeeper_block_info*);
static block_info_function g_block_info;

struct node {
  struct node* next;
  long index;
  unsigned char pattern[NODE_BYTES - 16];
};
_Static_assert(sizeof(struct node) == NODE_BYTES, "node size");

struct node* volatile g_list;
char* volatile g_cursor;
void** volatile g_pool;
static __thread void* volatile tls_keep;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_changed = PTHREAD_COND_INITIALIZER;
static int g_holder_ready, g_check_requested, g_holder_verdict = -1;

static void* new_patterned(size_t bytes, unsigned char tag) {
  unsigned char* block = malloc(bytes);
  for (size_t i = 0; i < bytes; ++i) block[i] = (unsigned char)(tag + i % 7);
  return block;
}

/* The block starting at `start` is still live, `bytes` long, with the pattern of `tag` from `from`. */
static int intact(const void* start, size_t bytes, unsigned char tag, size_t from, const char* what) {
  struct heapkeeper_block_info info;
  if (!g_block_info(start, &info) || info.start != start || info.requested_size != bytes) {
    printf("collect_mode: FAIL: the block kept by %s was freed\n", what);
    return 0;
  }
  const unsigned char* p = start;
  for (size_t i = from; i < bytes; ++i) {
    if (p[i] != (unsigned char)(tag + i % 7)) {
      printf("collect_mode: FAIL: the block kept by %s was overwritten\n", what);
      return 0;
    }
  }
  return 1;
}

static void* holder(void* unused) {
  (void)unused;
  void* volatile local = new_patterned(333, 5);
  corpus_clobber_stack();
  pthread_mutex_lock(&g_lock);
  g_holder_ready = 1;
  pthread_cond_broadcast(&g_changed);
  while (!g_check_requested) pthread_cond_wait(&g_changed, &g_lock);
  g_holder_verdict = intact(local, 333, 5, 0, "another thread's stack");
  free(local); /* so that nothing but the lost megabytes can leak at exit */
  pthread_cond_broadcast(&g_changed);
  pthread_mutex_unlock(&g_lock);
  return NULL;
}

static CORPUS_NOINLINE int keep_reachable_blocks(void) {
  for (long i = 0; i < LIST_LENGTH; ++i) {
    struct node* n = new_patterned(NODE_BYTES, 1);
    n->index = i;
    n->next = g_list;
    g_list = n;
  }
  g_cursor = (char*)new_patterned(100, 2) + 40;
  tls_keep = new_patterned(111, 3);
  void* pool = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (pool == MAP_FAILED) return 0;
  g_pool = pool;
  g_pool[17] = new_patterned(444, 4);
  return 1;
}

static CORPUS_NOINLINE int reachable_blocks_intact(void) {
  int ok = 1;
  long expected_index = LIST_LENGTH - 1;
  for (struct node* n = g_list; n != NULL; n = n->next, --expected_index) {
    ok &= intact(n, NODE_BYTES, 1, 16, "a global list");
    if (n->index != expected_index) ok = 0;
  }
  if (expected_index != -1) {
    printf("collect_mode: FAIL: the global list lost nodes\n");
    ok = 0;
  }
  ok &= intact(g_cursor - 40, 100, 2, 0, "an interior pointer");
  ok &= intact(tls_keep, 111, 3, 0, "a TLS variable");
  ok &= intact(g_pool[17], 444, 4, 0, "an anonymous mapping");
  return ok;
}

static CORPUS_NOINLINE void lose_megabyte(void) {
  char* volatile block = malloc(LEAK_BYTES);
  corpus_fill(block, LEAK_BYTES);
  block = NULL;
}

int main(void) {
  stats_function heap_stats = (stats_function)dlsym(RTLD_DEFAULT, "heapkeeper_heap_stats");
  g_block_info = (block_info_function)dlsym(RTLD_DEFAULT, "heapkeeper_block_info");
  if (heap_stats == NULL || g_block_info == NULL) {
    printf("collect_mode: not running under heapkeeper\n");
    return 4;
  }
  pthread_t thread;
  if (!keep_reachable_blocks() || pthread_create(&thread, NULL, holder, NULL) != 0) return 2;
  pthread_mutex_lock(&g_lock);
  while (!g_holder_ready) pthread_cond_wait(&g_changed, &g_lock);
  pthread_mutex_unlock(&g_lock);

  for (int i = 0; i < LEAK_COUNT; ++i) {
    lose_megabyte();
    corpus_clobber_stack();
    struct timespec pause = {0, 100 * 1000 * 1000};
    while (nanosleep(&pause, &pause) != 0) {
    }
  }

  struct heapkeeper_heap_stats stats;
  heap_stats(&stats);
  const unsigned long long leaked_total = (unsigned long long)LEAK_COUNT * LEAK_BYTES;
  printf("collect_mode: live_bytes=%llu live_blocks=%llu leaked_total=%llu\n", (unsigned long long)stats.live_bytes,
         (unsigned long long)stats.live_blocks, leaked_total);
  int ok = 1;
  if (stats.live_bytes * 3 >= leaked_total) {
    printf("collect_mode: FAIL: live heap not bounded (%llu >= a third of %llu)\n",
           (unsigned long long)stats.live_bytes, leaked_total);
    ok = 0;
  }
  ok &= reachable_blocks_intact();
  pthread_mutex_lock(&g_lock);
  g_check_requested = 1;
  pthread_cond_broadcast(&g_changed);
  while (g_holder_verdict < 0) pthread_cond_wait(&g_changed, &g_lock);
  ok &= g_holder_verdict;
  pthread_mutex_unlock(&g_lock);
  pthread_join(thread, NULL);
  printf(ok ? "collect_mode: ok\n" : "collect_mode: FAILED\n");
  return ok ? 0 : 1;
}
