/* leak_strdup: lost copies made by strdup (23 bytes with the terminator) and strndup (5 bytes).
 *
 * corpus: expect direct=2 indirect=0 bytes=28
 * corpus: direct-leak-in lose_copies
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "corpus.h"

static CORPUS_NOINLINE void lose_copies(void) {
  char* volatile copy = strdup("heapkeeper leak corpus");
  copy[0] = 'H';
  copy = strndup("abcdefgh", 4);
  copy[0] = 'A';
  copy = NULL;
}

int main(void) {
  lose_copies();
  corpus_clobber_stack();
  return 0;
}
