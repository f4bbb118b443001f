/* A large, pointer-rich heap for the scan benchmark: N blocks (default 10 million, ~100 bytes each,
 * about 1 GiB) linked into a reachable tree from a global, plus a few leaked chains, then exit.
 * Usage: big_heap [blocks] [leaked-chains] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node {
  struct node *left, *right;
  char payload[80];
};

struct node* volatile root;

static struct node* make(size_t i) {
  struct node* n = malloc(sizeof *n);
  n->left = n->right = NULL;
  memset(n->payload, (int)(i & 0x7f), sizeof n->payload);
  return n;
}

int main(int argc, char** argv) {
  size_t count = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000000;
  size_t leaks = argc > 2 ? strtoull(argv[2], NULL, 10) : 100;
  struct node** all = malloc(count * sizeof *all);
  for (size_t i = 0; i < count; ++i) {
    all[i] = make(i);
    if (i > 0) { /* heap-shaped tree: parent of i is (i-1)/2 */
      struct node* parent = all[(i - 1) / 2];
      if (i % 2)
        parent->left = all[i];
      else
        parent->right = all[i];
    }
  }
  root = all[0];
  free(all);
  for (size_t c = 0; c < leaks; ++c) { /* chains of 3 that nothing points to */
    struct node *a = make(c), *b = make(c), *d = make(c);
    a->left = b;
    b->left = d;
  }
  printf("built %zu reachable blocks and %zu leaked chains\n", count, leaks);
  return 0;
}
