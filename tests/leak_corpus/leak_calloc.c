/* leak_calloc: a lost calloc(25, 8) block (200 bytes).
 *
 * corpus: expect direct=1 indirect=0 bytes=200
 * corpus: direct-leak-in lose_calloc
 */
#include <stdlib.h>

#include "corpus.h"

static CORPUS_NOINLINE void lose_calloc(void) {
  long* volatile block = calloc(25, sizeof(long));
  block[3] = 3;
  block = NULL;
}

int main(void) {
  lose_calloc();
  corpus_clobber_stack();
  return 0;
}
