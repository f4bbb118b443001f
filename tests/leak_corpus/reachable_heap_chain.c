/* reachable_heap_chain: global -> block A -> block B -> block C, and C also points into the middle
 * of a fourth block D. Only A is pointed to from outside the heap. Not leaks.
 *
 * corpus: expect direct=0 indirect=0 bytes=0
 */
#include <stdlib.h>

#include "corpus.h"

struct link {
  struct link* next;
  char* extra;
  char payload[48];
};

struct link* volatile g_chain;

static CORPUS_NOINLINE struct link* new_link(struct link* next) {
  struct link* l = malloc(sizeof *l);
  corpus_fill(l->payload, sizeof l->payload);
  l->next = next;
  l->extra = NULL;
  return l;
}

static CORPUS_NOINLINE void build_chain(void) {
  struct link* c = new_link(NULL);
  char* d = malloc(256);
  corpus_fill(d, 256);
  c->extra = d + 100;
  g_chain = new_link(new_link(c));
}

int main(void) {
  build_chain();
  corpus_clobber_stack();
  return 0;
}
