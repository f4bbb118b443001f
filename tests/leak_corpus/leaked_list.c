/* leaked_list: a singly linked list of ten nodes whose head pointer is lost. The head is the
 * direct leak; the nine nodes reachable only through it are indirect.
 *
 * corpus: expect direct=1 indirect=9 bytes=320
 * corpus: direct-leak-in build_list
 */
#include <stdlib.h>

#include "corpus.h"

struct node {
  struct node* next;
  char payload[24];
};
_Static_assert(sizeof(struct node) == 32, "the expectation counts 32-byte nodes");

static CORPUS_NOINLINE void build_list(void) {
  struct node* volatile head = NULL;
  for (int i = 0; i < 10; ++i) {
    struct node* n = malloc(sizeof *n);
    corpus_fill(n->payload, sizeof n->payload);
    n->next = head;
    head = n;
  }
  head = NULL;
}

int main(void) {
  build_list();
  corpus_clobber_stack();
  return 0;
}
