/* Leaks for HEAPKEEPER_BASELINE (tests/integration/baseline.sh): `baseline_workload SITES`, where
 * SITES holds 'k' (100 bytes from leak_known, the leak a project already knows) and 'n' (200
 * bytes from leak_new, one it has just introduced). Prints "done" and exits with status 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void leak_known(void) {
  char* volatile block = malloc(100);
  memset(block, 1, 100);
  block = NULL;
}

__attribute__((noinline)) void leak_new(void) {
  char* volatile block = malloc(200);
  memset(block, 2, 200);
  block = NULL;
}

/* Overwrites the stack below main's frame, where the leaked pointers were: 64 KiB, more than
 * malloc's deepest path (heapkeeper's stack capture included) uses (tests/leak_corpus/corpus.h). */
__attribute__((noinline)) static void clobber_stack(void) {
  char scratch[64 * 1024];
  memset(scratch, 0, sizeof scratch);
  __asm__ volatile("" : : "r"(scratch) : "memory"); /* the zeroes count as read: memset stays */
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  if (strchr(argv[1], 'k') != NULL) leak_known();
  if (strchr(argv[1], 'n') != NULL) leak_new();
  clobber_stack();
  printf("done\n");
  return 0;
}
