/* periodic_scan: leaks one block, then keeps running for 1.5 s. With scans every 200 ms, a
 * periodic scan must report the leak while the program still runs — its stderr line comes before
 * the program's own "corpus: exiting" line — and the exit scan sees it as an old leak.
 *
 * corpus: expect direct=1 indirect=0 bytes=4321
 * corpus: env HEAPKEEPER_SCAN_INTERVAL=200ms
 * corpus: stderr-before heapkeeper\[\d+\]: scan \d+: 1 new leaked blocks ||| corpus: exiting
 * corpus: json leaks.0.age_scans >= 1
 * corpus: json leaks.0.new_blocks == 0
 * corpus: json scans >= 3
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "corpus.h"

static CORPUS_NOINLINE void lose_block(void) {
  char* volatile block = malloc(4321);
  corpus_fill(block, 4321);
  block = NULL;
}

int main(void) {
  lose_block();
  corpus_clobber_stack();
  struct timespec pause = {1, 500 * 1000 * 1000};
  while (nanosleep(&pause, &pause) != 0) {
  }
  fprintf(stderr, "corpus: exiting\n");
  return 0;
}
