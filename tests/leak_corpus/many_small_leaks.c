/* many_small_leaks: 10,000 lost 16-byte blocks from one allocation site, reported as one group.
 *
 * corpus: expect direct=10000 indirect=0 bytes=160000
 * corpus: direct-leak-in lose_many
 * corpus: json len(leaks) == 1
 * corpus: json leaks.0.blocks == 10000
 */
#include <stdlib.h>

#include "corpus.h"

static CORPUS_NOINLINE void lose_many(int count) {
  for (int i = 0; i < count; ++i) {
    long* volatile block = malloc(16);
    block[0] = i;
    block[1] = -i;
    block = NULL;
  }
}

int main(void) {
  lose_many(10000);
  corpus_clobber_stack();
  return 0;
}
