/* Memory a program frees must go back to the system, and serve blocks of any other size
 * (issue #12). Run plainly and under heapkeeper by tests/integration/give_back.sh.
 *
 * Usage: give_back idle MIB DEADLINE_MS
 *   Writes MIB MiB in 1 MiB blocks, frees them, then does nothing but look at its own resident
 *   size (/proc/self/statm) every 20 ms until it is back within 8 MiB of what it was before
 *   the blocks ("given back"), or DEADLINE_MS have passed ("kept"). Plain glibc unmaps 1 MiB
 *   blocks at free, so it prints "given back" at once.
 * Usage: give_back sizes MIB
 *   Allocates MIB MiB in blocks of 1 MiB, frees them, and the same with blocks of 4 KiB, 64 KiB,
 *   1 MiB again and 16 KiB; the blocks are never written, so they cost address space, not memory.
 *   Prints "all sizes served", or which size ran out. Under HEAPKEEPER_HEAP_RESERVE smaller than
 *   twice MIB, each size must reuse what the one before it freed.
 * Usage: give_back leak | give_back tidy
 *   leak: loses one 100-byte block and exits, so an exit scan has something to find; tidy: frees
 *   the block it allocated, prints nothing (no stdio buffer) and exits with nothing allocated.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long resident_mib(void) {
  FILE* file = fopen("/proc/self/statm", "r");
  long size = 0, resident = 0;
  if (file == NULL) return -1;
  if (fscanf(file, "%ld %ld", &size, &resident) != 2) resident = -1;
  fclose(file);
  return resident < 0 ? -1 : resident * 4096 / (1024 * 1024);
}

static int idle(long mib, long deadline_ms) {
  const long before = resident_mib();
  char** blocks = calloc((size_t)mib, sizeof *blocks);
  if (blocks == NULL) return 1;
  for (long i = 0; i < mib; ++i) {
    blocks[i] = malloc(1 << 20);
    if (blocks[i] == NULL) return 1;
    memset(blocks[i], 1, 1 << 20);
  }
  const long full = resident_mib();
  for (long i = 0; i < mib; ++i) free(blocks[i]);
  free(blocks);
  for (long waited = 0; waited <= deadline_ms; waited += 20) {
    const long now = resident_mib();
    if (now >= 0 && now <= before + 8) {
      printf("given back\n");
      return 0;
    }
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  printf("kept (resident %ld MiB before, %ld MiB with the blocks, %ld MiB after)\n", before, full, resident_mib());
  return 0;
}

static int sizes(long mib) {
  static const size_t block_sizes[] = {1 << 20, 4 << 10, 64 << 10, 1 << 20, 16 << 10};
  const size_t most = (size_t)mib * (1 << 20) / (4 << 10);
  void** blocks = malloc(most * sizeof *blocks);
  if (blocks == NULL) return 1;
  for (size_t s = 0; s < sizeof block_sizes / sizeof block_sizes[0]; ++s) {
    const size_t size = block_sizes[s];
    const size_t count = (size_t)mib * (1 << 20) / size;
    for (size_t i = 0; i < count; ++i) {
      blocks[i] = malloc(size);
      if (blocks[i] == NULL) {
        printf("%zu-byte blocks ran out after %zu MiB\n", size, i * size >> 20);
        while (i > 0) free(blocks[--i]); /* no leak report to wade through */
        free(blocks);
        return 0;
      }
    }
    for (size_t i = 0; i < count; ++i) free(blocks[i]);
  }
  free(blocks);
  printf("all sizes served\n");
  return 0;
}

static void* volatile lost;

__attribute__((noinline)) static void lose_a_block(void) {
  lost = malloc(100);
  lost = NULL;
}

/* Overwrites the stack lose_a_block used, so no stale copy of the pointer survives there. */
__attribute__((noinline)) static void clobber_stack(void) {
  char volatile area[4096];
  for (size_t i = 0; i < sizeof area; ++i) area[i] = 0;
}

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "leak") == 0) {
    lose_a_block();
    clobber_stack();
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "tidy") == 0) {
    char* volatile block = malloc(100);
    free(block);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "idle") == 0) return idle(atol(argv[2]), atol(argv[3]));
  if (argc == 3 && strcmp(argv[1], "sizes") == 0) return sizes(atol(argv[2]));
  fprintf(stderr, "usage: give_back idle MIB DEADLINE_MS | give_back sizes MIB | give_back leak|tidy\n");
  return 2;
}
