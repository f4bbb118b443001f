/* leak_whole_page_neighbours: 4 KiB and 64 KiB blocks (sizes that fill whole pages exactly, which
 * heapkeeper serves with their headers out of band) allocated one after the other, every other one
 * lost and the rest kept by a global. The allocator places them side by side, so each lost block
 * ends exactly where a kept one starts: the kept block's pointer is also one past the lost block's
 * end. It is the kept block's pointer: the lost blocks are leaks, all of them.
 *
 * corpus: expect direct=16 indirect=0 bytes=557056
 * corpus: direct-leak-in lose_every_other
 * corpus: stdout-last leak_whole_page_neighbours: done
 */
#include <stdio.h>
#include <stdlib.h>

#include "corpus.h"

#define COUNT 16 /* per size: 8 lost, 8 kept */

static char* volatile g_kept[2][COUNT / 2];

static CORPUS_NOINLINE int lose_every_other(int row, size_t size) {
  for (int i = 0; i < COUNT; ++i) {
    char* volatile block = malloc(size);
    if (block == NULL) return 0;
    corpus_fill(block, size);
    if (i % 2 == 1) g_kept[row][i / 2] = block;
    block = NULL;
  }
  return 1;
}

int main(void) {
  if (!lose_every_other(0, 4096) || !lose_every_other(1, 65536)) return 2;
  corpus_clobber_stack();
  printf("leak_whole_page_neighbours: done\n");
  return 0;
}
