/* reclaim_too_early: a program that hides its only pointer to a block (XOR with a constant), so
 * that no conservative scan can see it, and later un-hides it and frees the block.
 *
 * Under heapkeeper's collect mode the block looks unreachable, and is eventually freed by the
 * collector; the program's own free then comes after heapkeeper's. That free must be reported in
 * one "heapkeeper reclaimed this block too early" line and ignored — never a double-free abort.
 * Under heapkeeper the program waits (at most 10 s) until the live heap shows the block gone, by
 * heapkeeper_heap_stats looked up with dlsym; without heapkeeper it does not wait. Its output is
 * the same either way; it never reads the block after hiding it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "heapkeeper/heapkeeper.h"

#define BLOCK_BYTES 1500000
#define MASK ((uintptr_t)0x5a5a5a5a5a5a5a5aull)

typedef void (*stats_function)(struct heapkeeper_heap_stats*);

static volatile uintptr_t g_hidden;

static __attribute__((noinline)) void hide_block(void) {
  char* block = malloc(BLOCK_BYTES);
  memset(block, 0x11, BLOCK_BYTES);
  g_hidden = (uintptr_t)block ^ MASK;
}

static __attribute__((noinline)) void clobber_stack(void) {
  char area[64 * 1024];
  memset(area, 0, sizeof area);
  __asm__ volatile("" : : "r"(area) : "memory");
}

static void pause_ms(long ms) {
  struct timespec left = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&left, &left) != 0) {
  }
}

/* Mode "resurrect", driven through stdin by a script that runs `heapkeeper scan PID` between the
 * steps: the pointer is hidden ("hidden"), then put back into a global on "unhide" ("unhidden"),
 * then on "check" the block's contents are checked and it is freed. Collect mode, having held
 * the block after two scans that could not see it, must see the reference at the third scan and
 * keep the block: intact, and freed once, by the program. */
static char* volatile g_visible;

static int next_command(const char* expected) {
  char line[64];
  if (fgets(line, sizeof line, stdin) == NULL) return 0;
  line[strcspn(line, "\n")] = '\0';
  return strcmp(line, expected) == 0;
}

static int resurrect(void) {
  hide_block();
  clobber_stack();
  printf("reclaim_too_early: hidden\n");
  fflush(stdout);
  if (!next_command("unhide")) return 2;
  g_visible = (char*)(g_hidden ^ MASK);
  printf("reclaim_too_early: unhidden\n");
  fflush(stdout);
  if (!next_command("check")) return 2;
  int intact = 1;
  for (size_t i = 0; i < BLOCK_BYTES; i += 4096) intact &= g_visible[i] == 0x11;
  printf("reclaim_too_early: block %s\n", intact ? "intact" : "DAMAGED");
  free(g_visible);
  return intact ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "resurrect") == 0) return resurrect();
  stats_function heap_stats = (stats_function)dlsym(RTLD_DEFAULT, "heapkeeper_heap_stats");
  struct heapkeeper_heap_stats stats;
  uint64_t before = 0;
  if (heap_stats != NULL) {
    heap_stats(&stats);
    before = stats.live_bytes;
  }
  hide_block();
  clobber_stack();
  printf("reclaim_too_early: pointer hidden\n");
  fflush(stdout);
  /* Under heapkeeper: until the block is gone from the live heap (collected), or 10 s. */
  for (int waited = 0; heap_stats != NULL && waited < 10000; waited += 50) {
    heap_stats(&stats);
    if (stats.live_bytes + BLOCK_BYTES / 2 < before + BLOCK_BYTES) break;
    pause_ms(50);
  }
  free((void*)(g_hidden ^ MASK));
  printf("reclaim_too_early: freed\n");
  return 0;
}
