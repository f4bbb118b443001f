/* held_block.h: what the "never invented" programs (tests/integration/never_invented.sh) share: a
 * block of BLOCK_BYTES filled with a pattern whose only pointer they hide somewhere for WAIT_MS,
 * the check that it came back intact, a stack clobber that leaves no stale copy of the pointer in
 * dead frames, and a sleep that no signal cuts short. Header-only, as thread_timer.h. */
#pragma once

#include <errno.h>
#include <string.h>
#include <time.h>

#define BLOCK_BYTES 4000
#define WAIT_MS 800

static __attribute__((unused)) void fill(unsigned char* block) {
  for (int i = 0; i < BLOCK_BYTES; ++i) block[i] = (unsigned char)(i * 7 + 3);
}

/* Whether bytes [from, BLOCK_BYTES) still hold the pattern. */
static __attribute__((unused)) int intact(const unsigned char* block, int from) {
  for (int i = from; i < BLOCK_BYTES; ++i) {
    if (block[i] != (unsigned char)(i * 7 + 3)) return 0;
  }
  return 1;
}

/* Zeroes the stack below the caller: no stale copy of the pointer survives in dead frames. */
static __attribute__((noinline, unused)) void clobber_stack(void) {
  char area[64 * 1024];
  memset(area, 0, sizeof area);
  __asm__ volatile("" : : "r"(area) : "memory");
}

/* Sleeps `ms` whatever interrupts it. */
static __attribute__((unused)) void pause_ms(long ms) {
  struct timespec left = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&left, &left) != 0 && errno == EINTR) {
  }
}
