/* reachable_one_past_end: blocks whose only pointer points one byte past their end, as jq's
 * `mem_end` does ("one past the end of the allocated region"; C allows such a pointer). Each block
 * stays in use — written and checked through its end pointer — and none is a leak, neither in the
 * periodic scans every 100 ms while the program runs nor at exit:
 *   - a 48-byte block whose next neighbour (64 bytes further: 48 bytes plus a 16-byte header fill a
 *     64-byte slot exactly, under glibc as under heapkeeper) is a live block of its own, kept by an
 *     ordinary pointer: the end pointer is that neighbour's header address, and refers to both;
 *   - a 48-byte block whose neighbour's slot is free: the end pointer lands on no live block;
 *   - a 40-byte block: its end lies in the slack of its 64-byte slot;
 *   - a 100000-byte block (slack after it), and a 131056-byte one (16 + 131056 = 128 KiB exactly:
 *     its end is the first byte after its pages).
 * The neighbour pair is found among 64 blocks of 48 bytes by address (under glibc and heapkeeper
 * there always is one, and the program prints "neighbours: side by side"; under valgrind or
 * LeakSanitizer, whose blocks have red zones, there is none, and a lone block stands in for it).
 *
 * corpus: expect direct=0 indirect=0 bytes=0
 * corpus: env HEAPKEEPER_SCAN_INTERVAL=100ms
 * corpus: stderr-absent new leaked blocks
 * corpus: json scans >= 4
 * corpus: stdout-contains neighbours: side by side
 * corpus: stdout-last reachable_one_past_end: ok
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corpus.h"

#define SMALL 48
#define SLOT 64 /* SMALL plus a 16-byte header, a size class of its own in glibc and jemalloc */
#define SLACKED 40
#define LARGE 100000
#define EXACT_LARGE (128 * 1024 - 16)
#define CANDIDATES 64

_Static_assert(SMALL + 16 == SLOT, "48 bytes and a 16-byte header fill a 64-byte slot");

/* The only pointers the program keeps to the five blocks: each one past its block's end. */
static char* volatile g_end_before_neighbour;
static char* volatile g_end_before_free_slot;
static char* volatile g_end_in_slack;
static char* volatile g_end_large;
static char* volatile g_end_exact_large;
/* The neighbour is the program's too, kept by an ordinary pointer. */
static char* volatile g_neighbour;

static void pattern(char* block, size_t bytes, int tag) {
  for (size_t i = 0; i < bytes; ++i) block[i] = (char)(tag + i % 13);
}

static int intact(const char* end, size_t bytes, int tag) {
  const char* block = end - bytes;
  for (size_t i = 0; i < bytes; ++i) {
    if (block[i] != (char)(tag + i % 13)) return 0;
  }
  return 1;
}

/* Leaves only end pointers behind (this frame, holding the start pointers, dies on return). */
static CORPUS_NOINLINE int keep_only_end_pointers(void) {
  char* volatile small[CANDIDATES];
  for (int i = 0; i < CANDIDATES; ++i) small[i] = malloc(SMALL);
  int before = -1, neighbour = -1, lonely = -1;
  for (int i = 0; i < CANDIDATES && before < 0; ++i) {
    for (int j = 0; j < CANDIDATES; ++j) {
      if (small[j] == small[i] + SLOT) {
        before = i;
        neighbour = j;
        break;
      }
    }
  }
  printf("neighbours: %s\n", before >= 0 ? "side by side" : "none side by side");
  if (before < 0) { /* another allocator (red zones): two lone blocks */
    before = 0;
    neighbour = 1;
  }
  /* A block with no live neighbour after it: one whose next slot is freed below (it is one of
   * the candidates, or was never handed out). */
  for (int i = 0; i < CANDIDATES && lonely < 0; ++i) {
    if (i == before || i == neighbour || small[i] + SLOT == small[before] || small[i] + SLOT == small[neighbour])
      continue;
    lonely = i;
  }
  if (lonely < 0) return 0;
  pattern(small[before], SMALL, 1);
  pattern(small[lonely], SMALL, 2);
  g_end_before_neighbour = small[before] + SMALL;
  g_end_before_free_slot = small[lonely] + SMALL;
  g_neighbour = small[neighbour];
  for (int i = 0; i < CANDIDATES; ++i) {
    if (i != before && i != neighbour && i != lonely) free(small[i]);
    small[i] = NULL;
  }
  char* slacked = malloc(SLACKED);
  pattern(slacked, SLACKED, 3);
  g_end_in_slack = slacked + SLACKED;
  char* large = malloc(LARGE);
  pattern(large, LARGE, 4);
  g_end_large = large + LARGE;
  char* exact = malloc(EXACT_LARGE);
  pattern(exact, EXACT_LARGE, 5);
  g_end_exact_large = exact + EXACT_LARGE;
  return 1;
}

static void pause_ms(long ms) {
  struct timespec left = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&left, &left) != 0) {
  }
}

int main(void) {
  if (!keep_only_end_pointers()) {
    printf("reachable_one_past_end: no block without a live neighbour\n");
    return 3;
  }
  corpus_clobber_stack();
  pause_ms(600); /* several periodic scans see only the end pointers */
  int ok = intact(g_end_before_neighbour, SMALL, 1) && intact(g_end_before_free_slot, SMALL, 2) &&
           intact(g_end_in_slack, SLACKED, 3) && intact(g_end_large, LARGE, 4) &&
           intact(g_end_exact_large, EXACT_LARGE, 5);
  printf(ok ? "reachable_one_past_end: ok\n" : "reachable_one_past_end: FAILED\n");
  /* Still referenced only through their ends at exit: no leak then either. */
  return ok ? 0 : 1;
}
