/* late_leak: the time-to-first-leak-report workload of scripts/bench.sh. It churns the heap for a
 * fixed time (default 20 s) — frees and allocates blocks of 16..2048 bytes in a window of 20,000
 * live ones, writing each — and loses one block of 12,345 bytes, allocated in lose_early_block(),
 * one second in. It says so on stderr ("late_leak: leaked 12345 bytes in lose_early_block at
 * 1.00 s, pid N"), so a watcher can time how long each tool takes to report that block: a tool that
 * only checks at exit reports it about DURATION - 1 s later, heapkeeper's periodic scans within
 * one interval.
 *
 * The run lasts a fixed time whatever the tool's slowdown (a slow tool does less work, it does not
 * run longer), so the times compare when a report appears, not how fast the tools are. Nothing
 * else leaks: every churn block is freed before exit. The block is lost the way the leak corpus
 * loses blocks (tests/leak_corpus/corpus.h): its last pointer dies in a noinline function whose
 * dead frame is then overwritten, so no conservative scanner finds a stale copy.
 *
 * Usage: late_leak [DURATION_SECONDS [LEAK_AT_SECONDS]]   (default 20 1)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LEAK_BYTES 12345
#define WINDOW 20000
#define CLOBBER_BYTES (64 * 1024)

static double seconds_since(const struct timespec* start) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static __attribute__((noinline)) void lose_early_block(void) {
  char* volatile block = malloc(LEAK_BYTES);
  if (block != NULL) memset(block, 0x5a, LEAK_BYTES); /* no pointer-like contents */
  block = NULL;
}

/* Zeroes the stack below the caller, where lose_early_block's and malloc's dead frames were. */
static __attribute__((noinline)) void clobber_stack(void) {
  char area[CLOBBER_BYTES];
  memset(area, 0, sizeof area);
  __asm__ volatile("" : : "r"(area) : "memory");
}

static uint64_t next_random(uint64_t* state) { /* xorshift64: the same churn under every tool */
  *state ^= *state << 13;
  *state ^= *state >> 7;
  *state ^= *state << 17;
  return *state;
}

int main(int argc, char** argv) {
  double duration = argc > 1 ? atof(argv[1]) : 20.0;
  double leak_at = argc > 2 ? atof(argv[2]) : 1.0;
  if (duration <= 0 || leak_at < 0 || leak_at >= duration) {
    fprintf(stderr, "usage: late_leak [DURATION_SECONDS [LEAK_AT_SECONDS]] (LEAK_AT < DURATION)\n");
    return 2;
  }
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  char** window = calloc(WINDOW, sizeof *window);
  if (window == NULL) return 1;
  uint64_t state = 0x9e3779b97f4a7c15u, operations = 0;
  int leaked = 0;
  for (;;) {
    for (int i = 0; i < 1024; ++i, ++operations) {
      uint64_t r = next_random(&state);
      size_t slot = (size_t)(r % WINDOW);
      size_t size = 16 + (size_t)((r >> 32) % 2033);
      free(window[slot]);
      window[slot] = malloc(size);
      if (window[slot] != NULL) memset(window[slot], (int)(r & 0x7f), size);
    }
    double now = seconds_since(&start);
    if (!leaked && now >= leak_at) {
      lose_early_block();
      clobber_stack();
      leaked = 1;
      fprintf(stderr, "late_leak: leaked %d bytes in lose_early_block at %.2f s, pid %d\n", LEAK_BYTES, now,
              (int)getpid());
    }
    if (now >= duration) break;
  }
  for (size_t i = 0; i < WINDOW; ++i) free(window[i]);
  free(window);
  printf("late_leak: %llu operations in %.1f s\n", (unsigned long long)operations, duration);
  return 0;
}
