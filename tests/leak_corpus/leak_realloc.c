/* leak_realloc: three lost blocks last resized by realloc — one grown twice (16 -> 1000 -> 4000
 * bytes), one made by realloc(NULL, 77), one shrunk (500 -> 50). What leaks is the final size.
 *
 * corpus: expect direct=3 indirect=0 bytes=4127
 * corpus: direct-leak-in lose_grown
 * corpus: direct-leak-in lose_fresh
 * corpus: direct-leak-in lose_shrunk
 */
#include <stdlib.h>

#include "corpus.h"

static CORPUS_NOINLINE void lose_grown(void) {
  char* volatile block = malloc(16);
  corpus_fill(block, 16);
  block = realloc(block, 1000);
  corpus_fill(block, 1000);
  block = realloc(block, 4000);
  corpus_fill(block, 4000);
  block = NULL;
}

static CORPUS_NOINLINE void lose_fresh(void) {
  char* volatile block = realloc(NULL, 77);
  corpus_fill(block, 77);
  block = NULL;
}

static CORPUS_NOINLINE void lose_shrunk(void) {
  char* volatile block = malloc(500);
  corpus_fill(block, 500);
  block = realloc(block, 50);
  block = NULL;
}

int main(void) {
  lose_grown();
  lose_fresh();
  lose_shrunk();
  corpus_clobber_stack();
  return 0;
}
