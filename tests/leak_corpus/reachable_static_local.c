/* reachable_static_local: a block whose only pointer is a function's static variable. Not a leak.
 *
 * corpus: expect direct=0 indirect=0 bytes=0
 */
#include <stdlib.h>

#include "corpus.h"

static CORPUS_NOINLINE void* cached_buffer(void) {
  static void* volatile cache;
  if (cache == NULL) {
    cache = malloc(150);
    corpus_fill(cache, 150);
  }
  return NULL; /* the caller gets no copy */
}

int main(void) {
  cached_buffer();
  corpus_clobber_stack();
  return 0;
}
