/* unreachable_cycle: a 2-cycle and a 3-cycle of blocks that only point to each other, and a block
 * only the 3-cycle points to. Every block is referenced by another leaked block, so none is
 * "direct", and no direct leak reaches them: all six are cycle leaks, the garbage only a cycle
 * collector frees (report/leak_kind.h). (LeakSanitizer reports all six as indirect; valgrind
 * picks a "clique leader" of each cycle as definitely lost.)
 *
 * corpus: expect direct=0 indirect=0 cycle=6 bytes=312
 * corpus: cycle-leak-in make_two_cycle
 * corpus: cycle-leak-in make_three_cycle
 */
#include <stdlib.h>

#include "corpus.h"

struct pair_node {
  struct pair_node* next;
  char payload[40];
};
struct ring_node {
  struct ring_node* next;
  char* tail; /* a block only the cycle reaches */
  char payload[48];
};
_Static_assert(sizeof(struct pair_node) == 48 && sizeof(struct ring_node) == 64, "expected sizes");

static CORPUS_NOINLINE void make_two_cycle(void) {
  struct pair_node* volatile a = malloc(sizeof *a);
  struct pair_node* volatile b = malloc(sizeof *b);
  corpus_fill(a->payload, sizeof a->payload);
  corpus_fill(b->payload, sizeof b->payload);
  a->next = b;
  b->next = a;
  a = b = NULL;
}

static CORPUS_NOINLINE void make_three_cycle(void) {
  struct ring_node* volatile a = malloc(sizeof *a);
  struct ring_node* volatile b = malloc(sizeof *b);
  struct ring_node* volatile c = malloc(sizeof *c);
  corpus_fill(a->payload, sizeof a->payload);
  corpus_fill(b->payload, sizeof b->payload);
  corpus_fill(c->payload, sizeof c->payload);
  a->tail = malloc(24);
  b->tail = c->tail = NULL;
  corpus_fill(a->tail, 24);
  a->next = b;
  b->next = c;
  c->next = a;
  a = b = c = NULL;
}

int main(void) {
  make_two_cycle();
  make_three_cycle();
  corpus_clobber_stack();
  return 0;
}
