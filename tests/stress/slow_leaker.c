/* A program that leaks slowly while doing leak-free work around the leak.
 *
 * Usage: slow_leaker [TICKS] [INTERVAL_MS]      (defaults 600 100: a minute)
 *
 * Every INTERVAL_MS milliseconds leak_one_record() allocates a 640-byte record and drops its only
 * pointer; meanwhile the main thread replaces entries of a cache reachable from a global, and a
 * second thread keeps a linked list on its own stack growing and shrinking — reachable memory
 * that changes all the time and must never be reported. After TICKS ticks it prints how many
 * records it leaked (exactly TICKS) and exits. Under heapkeeper with periodic scans, the leak
 * count found by the scans grows with every scan, and at exit it is exactly TICKS blocks, all from
 * leak_one_record, and nothing else.
 *
 * Built at -O0 (like the leak corpus): the pointer to drop is really gone once the function
 * returns and stress_clobber_stack() has run, and every reachable pointer really is stored.
 * Hold point: 300 blocks of 256 bytes before the ticks start (see stress_common.h).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stress_common.h"

enum { kRecordBytes = 640, kCacheSlots = 256 };

static void* volatile g_cache[kCacheSlots];
static size_t g_cache_sizes[kCacheSlots];
static volatile int g_stop;

static STRESS_NOINLINE void leak_one_record(int tick) {
  char* volatile record = malloc(kRecordBytes);
  if (record == NULL) abort();
  memset(record, 0x5a ^ (tick & 0x0f), kRecordBytes); /* no byte pattern that could be a pointer */
  record = NULL;
}

/* Reachable churn: replaces a few cache entries (the old ones are freed). */
static STRESS_NOINLINE uint64_t refresh_cache(int tick) {
  uint64_t sum = 0;
  for (int k = 0; k < 16; ++k) {
    const int slot = (tick * 37 + k * 11) % kCacheSlots;
    if (g_cache[slot] != NULL) {
      sum += stress_mismatches(g_cache[slot], g_cache_sizes[slot], (uint64_t)slot) == 0;
      free(g_cache[slot]);
    }
    const size_t size = 32 + (size_t)((tick * 131 + k * 17) % 3000);
    void* block = malloc(size);
    if (block == NULL) abort();
    stress_fill(block, size, (uint64_t)slot);
    g_cache[slot] = block;
    g_cache_sizes[slot] = size;
  }
  return sum;
}

struct node {
  struct node* next;
  char text[100];
};

/* A list that lives on this thread's stack only, growing and shrinking. */
static void* list_keeper(void* unused) {
  (void)unused;
  struct node* volatile head = NULL;
  unsigned length = 0, step = 0;
  while (!__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE)) {
    if (length < 500 && (step % 3 != 0 || length == 0)) {
      struct node* n = malloc(sizeof *n);
      if (n == NULL) abort();
      snprintf(n->text, sizeof n->text, "node %u", step);
      n->next = head;
      head = n;
      ++length;
    } else {
      struct node* n = head;
      head = n->next;
      free(n);
      --length;
    }
    ++step;
    if (step % 50 == 0) stress_sleep_ms(5);
  }
  while (head != NULL) {
    struct node* n = head;
    head = n->next;
    free(n);
  }
  return NULL;
}

int main(int argc, char** argv) {
  const int ticks = argc > 1 ? atoi(argv[1]) : 600;
  const int interval_ms = argc > 2 ? atoi(argv[2]) : 100;
  if (ticks <= 0 || interval_ms <= 0) {
    fprintf(stderr, "usage: slow_leaker [TICKS] [INTERVAL_MS]\n");
    return 2;
  }
  void* held[300];
  stress_hold_blocks(held, 300, 256, 9);
  stress_hold(300, 300 * 256);
  size_t corrupt = stress_release_blocks(held, 300, 256, 9);

  pthread_t keeper;
  if (pthread_create(&keeper, NULL, list_keeper, NULL) != 0) return 3;
  uint64_t intact = 0;
  for (int tick = 0; tick < ticks; ++tick) {
    leak_one_record(tick);
    stress_clobber_stack();
    intact += refresh_cache(tick);
    stress_sleep_ms(interval_ms);
  }
  __atomic_store_n(&g_stop, 1, __ATOMIC_RELEASE);
  pthread_join(keeper, NULL);
  for (int slot = 0; slot < kCacheSlots; ++slot) {
    if (g_cache[slot] == NULL) continue;
    intact += stress_mismatches(g_cache[slot], g_cache_sizes[slot], (uint64_t)slot) == 0;
    free(g_cache[slot]);
    g_cache[slot] = NULL;
  }
  printf("leaked %d records of %d bytes from leak_one_record\n", ticks, kRecordBytes);
  printf("cache entries found intact: %llu, held blocks intact: %s\n", (unsigned long long)intact,
         corrupt == 0 ? "yes" : "no");
  return corrupt == 0 ? 0 : 1;
}
