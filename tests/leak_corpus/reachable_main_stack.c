/* reachable_main_stack: a block whose only pointer is a local variable of main, alive while the
 * program sleeps through several periodic scans and then calls exit() from a nested function, so
 * main's frame is still on the stack when the exit scan runs. Not a leak, at any scan.
 *
 * corpus: expect direct=0 indirect=0 bytes=0
 * corpus: env HEAPKEEPER_SCAN_INTERVAL=100ms
 * corpus: stderr-absent heapkeeper\[\d+\]: scan \d+:
 * corpus: json scans >= 3
 */
#include <stdlib.h>
#include <time.h>

#include "corpus.h"

static CORPUS_NOINLINE void* make_block(void) {
  void* block = malloc(555);
  corpus_fill(block, 555);
  return block;
}

static CORPUS_NOINLINE void finish(void) { exit(0); }

int main(void) {
  void* volatile local = make_block();
  corpus_clobber_stack(); /* only `local` is left pointing to the block */
  struct timespec pause = {0, 500 * 1000 * 1000};
  while (nanosleep(&pause, &pause) != 0) {
  }
  finish();
  return local != NULL;
}
