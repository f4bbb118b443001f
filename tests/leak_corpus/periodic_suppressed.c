/* periodic_suppressed: two leaks, one in a suppressed function, then 1.5 s of running with scans
 * every 200 ms. The periodic scan's line must leave the suppressed leak out of its counts (the
 * binary, which knows function names, says which stacks the suppressions hide), and say how much
 * it hid; no line may count both leaks as new.
 *
 * corpus: expect direct=1 indirect=0 bytes=64
 * corpus: suppress hidden_while_running
 * corpus: expect-suppressed blocks=1 bytes=500
 * corpus: env HEAPKEEPER_SCAN_INTERVAL=200ms
 * corpus: stderr-before heapkeeper\[\d+\]: scan \d+: 1 new leaked blocks \(64 B\); 1 leaked in all \(64 B\), and 1
 * suppressed \(500 B\) ||| corpus: exiting corpus: stderr-absent 2 new leaked blocks
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "corpus.h"

static CORPUS_NOINLINE void hidden_while_running(void) {
  char* volatile block = malloc(500);
  corpus_fill(block, 500);
  block = NULL;
}

static CORPUS_NOINLINE void reported_while_running(void) {
  char* volatile block = malloc(64);
  corpus_fill(block, 64);
  block = NULL;
}

int main(void) {
  hidden_while_running();
  reported_while_running();
  corpus_clobber_stack();
  struct timespec pause = {1, 500 * 1000 * 1000};
  while (nanosleep(&pause, &pause) != 0) {
  }
  fprintf(stderr, "corpus: exiting\n");
  return 0;
}
