/* size_cycle: keeps a fixed number of bytes live while cycling through block sizes of very
 * different classes (1 MiB, 64 KiB, 4 KiB, 256 bytes), the workload of issue #12's "memory given
 * back" goal (scripts/bench.sh).
 *
 * In each phase the program fills LIVE_MIB of blocks of one size, writing every page, then frees
 * them all and moves on to the next size: the live set never exceeds LIVE_MIB (plus the pointer
 * array), but an allocator that keeps what one size class was given, instead of reusing it for the
 * next class or giving it back, grows by LIVE_MIB per class. glibc reuses the freed memory across
 * sizes (and unmaps its large blocks), which is the baseline. Prints the peak live bytes and a
 * checksum of what it read back, identical for every allocator.
 *
 * Usage: size_cycle LIVE_MIB ROUNDS
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s LIVE_MIB ROUNDS\n", argv[0]);
    return 2;
  }
  const size_t live = (size_t)strtoul(argv[1], NULL, 10) << 20;
  const long rounds = strtol(argv[2], NULL, 10);
  static const size_t sizes[] = {1 << 20, 64 << 10, 4 << 10, 256};
  const size_t most_blocks = live / 256;
  char** blocks = malloc(most_blocks * sizeof *blocks);
  if (blocks == NULL) return 1;
  uint64_t checksum = 0;
  for (long round = 0; round < rounds; ++round) {
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; ++s) {
      const size_t size = sizes[s];
      const size_t count = live / size;
      for (size_t i = 0; i < count; ++i) {
        blocks[i] = malloc(size);
        if (blocks[i] == NULL) {
          fprintf(stderr, "size_cycle: malloc(%zu) failed after %zu blocks\n", size, i);
          return 1;
        }
        for (size_t offset = 0; offset < size; offset += 4096) blocks[i][offset] = (char)(i + offset / 4096);
        blocks[i][size - 1] = (char)round;
      }
      for (size_t i = 0; i < count; ++i) {
        checksum = checksum * 31 + (unsigned char)blocks[i][0] + (unsigned char)blocks[i][size - 1];
        free(blocks[i]);
      }
    }
  }
  free(blocks);
  printf("peak live %zu bytes, checksum %016llx\n", live + most_blocks * sizeof *blocks, (unsigned long long)checksum);
  return 0;
}
