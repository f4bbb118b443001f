/* A program that leaks fast, for heapkeeper's collect mode (HEAPKEEPER_MODE=collect): without
 * heapkeeper its memory grows by every leaked chunk; under heapkeeper the collector frees what
 * stays unreachable for two scans, so live memory stays bounded — and it must never free the
 * working set the program still uses.
 *
 * Usage: collect_leaker [TICKS] [INTERVAL_MS] [CHUNK_KIB]      (defaults 400 30 1024)
 *
 * Every INTERVAL_MS milliseconds lose_chunk() allocates CHUNK_KIB KiB, writes every page (so the
 * plain run's resident memory really grows) and drops the pointer. Meanwhile the program keeps a
 * 4 MiB working set reachable from a global array, replacing 32 of its blocks every tick and
 * checking the contents of every block it frees; at the end it checks all of them. stdout is
 * deterministic (what was leaked, whether the working set survived); the peak resident set size
 * goes to stderr ("collect_leaker: maxrss_kib=N"), for scripts/stress.sh to compare.
 *
 * Built at -O0 (like the leak corpus): a dropped pointer is really gone once lose_chunk() has
 * returned and stress_clobber_stack() has run.
 * Hold point: the initial working set, 2048 blocks of 2048 bytes (see stress_common.h).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "stress_common.h"

enum { kWorkingBlocks = 2048, kWorkingBytes = 2048, kReplacedPerTick = 32 };

static void* g_working[kWorkingBlocks];
static uint64_t g_seeds[kWorkingBlocks];

static STRESS_NOINLINE void lose_chunk(size_t bytes, int tick) {
  char* volatile chunk = malloc(bytes);
  if (chunk == NULL) abort();
  memset(chunk, 0x5a ^ (tick & 0x0f), bytes); /* every page touched; no byte pattern that could be a pointer */
  chunk = NULL;
}

/* Replaces some working-set blocks; returns how many of the freed ones were corrupted. */
static STRESS_NOINLINE size_t replace_working_blocks(int tick) {
  size_t corrupt = 0;
  for (int k = 0; k < kReplacedPerTick; ++k) {
    const int slot = (tick * 97 + k * 61) % kWorkingBlocks;
    corrupt += stress_mismatches(g_working[slot], kWorkingBytes, g_seeds[slot]) != 0;
    free(g_working[slot]);
    void* block = malloc(kWorkingBytes);
    if (block == NULL) abort();
    g_seeds[slot] = (uint64_t)tick * kWorkingBlocks + (uint64_t)slot + 1000000;
    stress_fill(block, kWorkingBytes, g_seeds[slot]);
    g_working[slot] = block;
  }
  return corrupt;
}

int main(int argc, char** argv) {
  const int ticks = argc > 1 ? atoi(argv[1]) : 400;
  const int interval_ms = argc > 2 ? atoi(argv[2]) : 30;
  const long chunk_kib = argc > 3 ? atol(argv[3]) : 1024;
  if (ticks <= 0 || interval_ms <= 0 || chunk_kib <= 0) {
    fprintf(stderr, "usage: collect_leaker [TICKS] [INTERVAL_MS] [CHUNK_KIB]\n");
    return 2;
  }
  stress_hold_blocks(g_working, kWorkingBlocks, kWorkingBytes, 0);
  for (int i = 0; i < kWorkingBlocks; ++i) g_seeds[i] = (uint64_t)i;
  stress_hold(kWorkingBlocks, (unsigned long long)kWorkingBlocks * kWorkingBytes);

  size_t corrupt = 0;
  for (int tick = 0; tick < ticks; ++tick) {
    lose_chunk((size_t)chunk_kib * 1024, tick);
    stress_clobber_stack();
    corrupt += replace_working_blocks(tick);
    stress_sleep_ms(interval_ms);
  }
  for (int i = 0; i < kWorkingBlocks; ++i) {
    corrupt += stress_mismatches(g_working[i], kWorkingBytes, g_seeds[i]) != 0;
    free(g_working[i]);
  }
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  printf("leaked %d chunks of %ld KiB (%ld MiB in all) from lose_chunk\n", ticks, chunk_kib, ticks * chunk_kib / 1024);
  printf("working set of %d blocks intact: %s\n", kWorkingBlocks, corrupt == 0 ? "yes" : "no");
  fprintf(stderr, "collect_leaker: maxrss_kib=%ld\n", usage.ru_maxrss);
  return corrupt == 0 ? 0 : 1;
}
