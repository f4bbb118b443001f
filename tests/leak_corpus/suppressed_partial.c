/* suppressed_partial: two leaks, only one of them in a suppressed function. The suppression must
 * hide exactly that one: the other (64 bytes in reported_leak) is reported.
 *
 * corpus: expect direct=1 indirect=0 bytes=64
 * corpus: suppress hidden_by_suppression
 * corpus: expect-suppressed blocks=1 bytes=500
 * corpus: direct-leak-in reported_leak
 */
#include <stdlib.h>

#include "corpus.h"

static CORPUS_NOINLINE void hidden_by_suppression(void) {
  char* volatile block = malloc(500);
  corpus_fill(block, 500);
  block = NULL;
}

static CORPUS_NOINLINE void reported_leak(void) {
  char* volatile block = malloc(64);
  corpus_fill(block, 64);
  block = NULL;
}

int main(void) {
  hidden_by_suppression();
  reported_leak();
  corpus_clobber_stack();
  return 0;
}
