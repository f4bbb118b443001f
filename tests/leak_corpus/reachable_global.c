/* reachable_global: blocks whose only pointers are globals, one in .bss and one in .data.
 * Not leaks.
 *
 * corpus: expect direct=0 indirect=0 bytes=0
 */
#include <stdlib.h>

#include "corpus.h"

void* volatile g_bss_keep;
void* volatile g_data_keep = (void*)1;

static CORPUS_NOINLINE void keep_blocks(void) {
  g_bss_keep = malloc(200);
  corpus_fill(g_bss_keep, 200);
  g_data_keep = malloc(300);
  corpus_fill(g_data_keep, 300);
}

int main(void) {
  keep_blocks();
  corpus_clobber_stack();
  return 0;
}
