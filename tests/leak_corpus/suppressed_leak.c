/* suppressed_leak: the only leak is made in a function named by a suppression (leak:PATTERN), so
 * nothing is reported, and the JSON report counts it under suppressed_leaks. The runner hands the
 * same suppression to valgrind and LeakSanitizer.
 *
 * corpus: expect direct=0 indirect=0 bytes=0
 * corpus: suppress hidden_by_suppression
 * corpus: expect-suppressed blocks=1 bytes=500
 * corpus: stderr-absent detected memory leaks
 */
#include <stdlib.h>

#include "corpus.h"

static CORPUS_NOINLINE void hidden_by_suppression(void) {
  char* volatile block = malloc(500);
  corpus_fill(block, 500);
  block = NULL;
}

int main(void) {
  hidden_by_suppression();
  corpus_clobber_stack();
  return 0;
}
