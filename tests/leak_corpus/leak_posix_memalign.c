/* leak_posix_memalign: a lost 200-byte block aligned to 64 bytes.
 *
 * corpus: expect direct=1 indirect=0 bytes=200
 * corpus: direct-leak-in lose_aligned
 */
#include <stdint.h>
#include <stdlib.h>

#include "corpus.h"

static CORPUS_NOINLINE int lose_aligned(void) {
  void* volatile block = NULL;
  if (posix_memalign((void**)&block, 64, 200) != 0 || ((uintptr_t)block & 63) != 0) return 0;
  corpus_fill(block, 200);
  block = NULL;
  return 1;
}

int main(void) {
  if (!lose_aligned()) return 2;
  corpus_clobber_stack();
  return 0;
}
