/* give_back: does the allocator hand freed memory back to the OS?
 *
 *   give_back idle MIB    allocates MIB MiB in 64 KiB blocks (touched), frees them all, goes idle
 *                         for 1.5 s, then prints its resident set ("resident_kib N")
 *   give_back cycle MIB   keeps MIB MiB live while cycling twice through 1 MiB, 64 KiB, 4 KiB and
 *                         256-byte blocks (each phase replaces the live set block by block with
 *                         blocks of the next size), then prints its peak resident set
 *
 * glibc trims the top of its heap and unmaps large chunks as they are freed; an allocator that keeps
 * freed pages resident until the program allocates again (jemalloc's decay is driven by activity)
 * holds an idle program's memory for good. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long status_kib(const char* field) {
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  long value = -1;
  size_t n = strlen(field);
  while (f != NULL && fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, field, n) == 0) value = strtol(line + n, NULL, 10);
  }
  if (f != NULL) fclose(f);
  return value;
}

static int idle(size_t mib) {
  size_t count = mib * 16;
  char** blocks = malloc(count * sizeof *blocks);
  for (size_t i = 0; i < count; ++i) {
    blocks[i] = malloc(64 << 10);
    if (blocks[i] == NULL) return 1;
    memset(blocks[i], 1, 64 << 10);
  }
  for (size_t i = 0; i < count; ++i) free(blocks[i]);
  free(blocks);
  struct timespec pause = {1, 500 * 1000 * 1000};
  while (nanosleep(&pause, &pause) != 0) {
  }
  printf("resident_kib %ld\n", status_kib("VmRSS:"));
  return 0;
}

static int cycle(size_t mib) {
  static const size_t sizes[] = {1 << 20, 64 << 10, 4 << 10, 256};
  const size_t live = mib << 20;
  char** blocks = NULL;
  size_t count = 0, block_size = 0;
  for (int round = 0; round < 2; ++round) {
    for (int phase = 0; phase < 4; ++phase) {
      const size_t size = sizes[phase], want = live / size;
      char** next = malloc(want * sizeof *next);
      size_t freed = 0;
      for (size_t i = 0; i < want; ++i) {
        while (freed < count && freed * block_size < (i + 1) * size) free(blocks[freed++]);
        next[i] = malloc(size);
        if (next[i] == NULL) return 1;
        memset(next[i], 1, size);
      }
      while (freed < count) free(blocks[freed++]);
      free(blocks);
      blocks = next;
      count = want;
      block_size = size;
    }
  }
  for (size_t i = 0; i < count; ++i) free(blocks[i]);
  free(blocks);
  printf("peak_resident_kib %ld\n", status_kib("VmHWM:"));
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: give_back idle|cycle MIB\n");
    return 2;
  }
  const size_t mib = strtoull(argv[2], NULL, 10);
  return strcmp(argv[1], "idle") == 0 ? idle(mib) : cycle(mib);
}
