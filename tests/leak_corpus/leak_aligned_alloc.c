/* leak_aligned_alloc: a lost 8192-byte block aligned to a page (C11 aligned_alloc).
 *
 * corpus: expect direct=1 indirect=0 bytes=8192
 * corpus: direct-leak-in lose_page_aligned
 */
#include <stdint.h>
#include <stdlib.h>

#include "corpus.h"

static CORPUS_NOINLINE int lose_page_aligned(void) {
  char* volatile block = aligned_alloc(4096, 8192);
  if (block == NULL || ((uintptr_t)block & 4095) != 0) return 0;
  corpus_fill(block, 8192);
  block = NULL;
  return 1;
}

int main(void) {
  if (!lose_page_aligned()) return 2;
  corpus_clobber_stack();
  return 0;
}
