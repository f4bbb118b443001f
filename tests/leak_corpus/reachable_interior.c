/* reachable_interior: a block whose only pointer points 40 bytes into it (as a struct member or
 * an array cursor would). Conservative collectors count interior pointers: not a leak. (valgrind
 * calls such a block "possibly lost", which is neither definitely nor indirectly lost.)
 *
 * corpus: expect direct=0 indirect=0 bytes=0
 */
#include <stdlib.h>

#include "corpus.h"

char* volatile g_cursor;

static CORPUS_NOINLINE void keep_interior(void) {
  char* block = malloc(100);
  corpus_fill(block, 100);
  g_cursor = block + 40;
  block = NULL;
}

int main(void) {
  keep_interior();
  corpus_clobber_stack();
  return 0;
}
