/* Helpers shared by the stress programs (scripts/stress.sh runs them with and without heapkeeper).
 *
 * A "hold point" lets the script compare heapkeeper's live figures with the program's own count:
 * stress_hold_blocks() allocates COUNT blocks of SIZE bytes from one call site, and stress_hold()
 * stops the program until the script has read `heapkeeper stats --json` and checked that the site
 * whose top frame is stress_hold_blocks holds exactly COUNT blocks and COUNT * SIZE bytes. The
 * handshake uses files in the directory named by HK_STRESS_HOLD: the program writes "ready"
 * (with the figures), the script answers with "go". Without HK_STRESS_HOLD (the plain run) the
 * program does not stop; either way it prints nothing, so stdout stays comparable. The handshake
 * uses only system calls, never malloc, so it does not change the figures being checked.
 *
 * stress_clobber_stack() overwrites dead stack frames so that a block a program means to lose is
 * not kept alive by a stale copy of its pointer (heapkeeper's scan is conservative).
 */
#ifndef HEAPKEEPER_STRESS_COMMON_H
#define HEAPKEEPER_STRESS_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STRESS_NOINLINE __attribute__((noinline))
#define STRESS_UNUSED __attribute__((unused))

/* How long a program waits for the script's "go" before going on by itself. */
#define STRESS_HOLD_SECONDS 30

/* Sleeps for `ms` milliseconds whatever signals arrive: heapkeeper's scans interrupt nanosleep
 * (it returns EINTR, never restarted), and the programs' timing must not depend on them. */
static STRESS_UNUSED void stress_sleep_ms(long ms) {
  struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {
  }
}

/* The byte at `index` of a block filled for `seed`; never forms a pointer into the heap. */
static inline unsigned char stress_pattern(uint64_t seed, size_t index) {
  return (unsigned char)(0x5a ^ (seed * 131 + index * 7));
}

static STRESS_UNUSED void stress_fill(void* block, size_t size, uint64_t seed) {
  unsigned char* p = (unsigned char*)block;
  for (size_t i = 0; i < size; ++i) p[i] = stress_pattern(seed, i);
}

/* Number of bytes of the block that do not hold the pattern of `seed`. */
static STRESS_UNUSED size_t stress_mismatches(const void* block, size_t size, uint64_t seed) {
  const unsigned char* p = (const unsigned char*)block;
  size_t bad = 0;
  for (size_t i = 0; i < size; ++i) bad += p[i] != stress_pattern(seed, i);
  return bad;
}

/* COUNT blocks of SIZE bytes, each filled, from this one call site (the one the script looks for
 * in the live stats). Returns the array of blocks (itself malloc'd elsewhere, in the caller's site). */
static STRESS_NOINLINE STRESS_UNUSED void stress_hold_blocks(void** blocks, size_t count, size_t size, uint64_t seed) {
  for (size_t i = 0; i < count; ++i) {
    blocks[i] = malloc(size);
    if (blocks[i] == NULL) abort();
    stress_fill(blocks[i], size, seed + i);
  }
}

/* Checks and frees what stress_hold_blocks made; returns the number of corrupted blocks. */
static STRESS_UNUSED size_t stress_release_blocks(void** blocks, size_t count, size_t size, uint64_t seed) {
  size_t corrupt = 0;
  for (size_t i = 0; i < count; ++i) {
    corrupt += stress_mismatches(blocks[i], size, seed + i) != 0;
    free(blocks[i]);
    blocks[i] = NULL;
  }
  return corrupt;
}

/* The hold point (see the opening comment): BLOCKS blocks and BYTES bytes are live at the
 * stress_hold_blocks site now. Returns when the script says "go", or after STRESS_HOLD_SECONDS. */
static STRESS_UNUSED void stress_hold(unsigned long long blocks, unsigned long long bytes) {
  const char* directory = getenv("HK_STRESS_HOLD");
  if (directory == NULL || *directory == '\0') return;
  char ready[4096], temporary[4096], go[4096], line[128];
  if (snprintf(ready, sizeof ready, "%s/ready", directory) >= (int)sizeof ready) return;
  snprintf(temporary, sizeof temporary, "%s/ready.tmp", directory);
  snprintf(go, sizeof go, "%s/go", directory);
  int length = snprintf(line, sizeof line, "%d %llu %llu\n", (int)getpid(), blocks, bytes);
  int fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t written = write(fd, line, (size_t)length);
  close(fd);
  /* rename: the script never reads a half-written file. */
  if (written != length || rename(temporary, ready) != 0) return;
  struct stat info;
  for (int waited = 0; waited < STRESS_HOLD_SECONDS * 100 && stat(go, &info) != 0; ++waited) stress_sleep_ms(10);
}

/* Far more than malloc's deepest path (stack capture included) uses below its caller. */
#define STRESS_CLOBBER_BYTES (64 * 1024)

/* Zeroes the stack below the caller's frame, where dead frames keep stale pointers. */
static STRESS_NOINLINE STRESS_UNUSED void stress_clobber_stack(void) {
  char area[STRESS_CLOBBER_BYTES];
  memset(area, 0, sizeof area);
  /* The compiler must believe the zeroes are read, or it could drop the memset. */
  __asm__ volatile("" : : "r"(area) : "memory");
}

#endif /* HEAPKEEPER_STRESS_COMMON_H */
