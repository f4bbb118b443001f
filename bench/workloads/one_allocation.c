/* one_allocation: a process that makes one heap allocation and frees it, the smallest program
 * that exercises a tracker's start-up, its first allocation and its exit (scripts/bench.sh, the
 * fixed-cost goal of issue #12). Prints nothing: spawn_loop.c runs it many times. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  /* volatile: the compiler may not drop a malloc/free pair whose result is unused. */
  char* volatile block = malloc(100);
  if (block == NULL) return 1;
  block[0] = 1;
  free(block);
  return 0;
}
