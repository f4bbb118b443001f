/* exit_code: leaks one block and writes 2,000 lines to stdout through stdio's buffer (a pipe makes
 * it fully buffered) without flushing. With HEAPKEEPER_EXITCODE=23 the process must exit with 23
 * and every line must still arrive.
 *
 * corpus: expect direct=1 indirect=0 bytes=99
 * corpus: env HEAPKEEPER_EXITCODE=23
 * corpus: expect-status 23
 * corpus: stdout-lines 2001
 * corpus: stdout-last corpus: end of output
 */
#include <stdio.h>
#include <stdlib.h>

#include "corpus.h"

static CORPUS_NOINLINE void lose_block(void) {
  char* volatile block = malloc(99);
  corpus_fill(block, 99);
  block = NULL;
}

int main(void) {
  lose_block();
  corpus_clobber_stack();
  for (int i = 0; i < 2000; ++i) printf("line %d of the program's output\n", i);
  printf("corpus: end of output\n");
  return 0;
}
