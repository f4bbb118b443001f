/* lost_malloc: one malloc'd block whose only pointer is overwritten.
 *
 * corpus: expect direct=1 indirect=0 bytes=123
 * corpus: direct-leak-in lose_block
 */
#include <stdlib.h>

#include "corpus.h"

static CORPUS_NOINLINE void lose_block(void) {
  char* volatile block = malloc(123);
  corpus_fill(block, 123);
  block = NULL;
}

int main(void) {
  lose_block();
  corpus_clobber_stack();
  return 0;
}
