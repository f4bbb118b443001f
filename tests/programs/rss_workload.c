/* A program whose memory is known, for the RSS breakdown and `heapkeeper trim` (issue #13):
 * tests/integration/rss_breakdown.sh.
 *
 * Usage: rss_workload HELD_MIB UNTOUCHED_MIB
 *   Allocates HELD_MIB MiB in 1 MiB blocks and writes every byte, and one block of UNTOUCHED_MIB
 *   MiB with calloc that it never touches (it costs address space, not RSS). Prints "ready" and
 *   waits. On SIGUSR1 it frees the written blocks (HELD_MIB MiB go back to the allocator) and
 *   prints "freed"; on SIGTERM it frees the rest and exits 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024 * 1024)

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: rss_workload HELD_MIB UNTOUCHED_MIB\n");
    return 2;
  }
  const long held = atol(argv[1]), untouched = atol(argv[2]);
  sigset_t wanted;
  sigemptyset(&wanted);
  sigaddset(&wanted, SIGUSR1);
  sigaddset(&wanted, SIGTERM);
  sigprocmask(SIG_BLOCK, &wanted, NULL);

  char** blocks = calloc((size_t)held, sizeof *blocks);
  if (blocks == NULL) return 1;
  for (long i = 0; i < held; ++i) {
    blocks[i] = malloc(MIB);
    if (blocks[i] == NULL) return 1;
    memset(blocks[i], 0x5a, MIB);
  }
  char* never_touched = calloc((size_t)untouched, MIB);
  if (untouched > 0 && never_touched == NULL) return 1;
  printf("ready\n");
  fflush(stdout);

  for (;;) {
    int signal_number = 0;
    if (sigwait(&wanted, &signal_number) != 0) return 1;
    if (signal_number == SIGUSR1 && blocks != NULL) {
      for (long i = 0; i < held; ++i) free(blocks[i]);
      free(blocks);
      blocks = NULL;
      printf("freed\n");
      fflush(stdout);
    } else if (signal_number == SIGTERM) {
      free(never_touched);
      return 0;
    }
  }
}
