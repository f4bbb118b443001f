/* Two leaks while the program runs (tests/integration/suppressions_live.sh): 500 bytes from
 * hidden_while_watched, which the test's suppressions file names, and 64 bytes from
 * reported_while_watched. Prints "ready" and runs until SIGTERM (at most a minute). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t stop;

static void on_term(int signal_number) {
  (void)signal_number;
  stop = 1;
}

__attribute__((noinline)) static void leak(size_t size) {
  char* volatile block = malloc(size);
  memset(block, 0x5a, size);
  block = NULL;
}

__attribute__((noinline)) void hidden_while_watched(void) { leak(500); }
__attribute__((noinline)) void reported_while_watched(void) { leak(64); }

/* Overwrites the stack below main's frame, where the leaked pointers were: 64 KiB, more than
 * malloc's deepest path (heapkeeper's stack capture included) uses (tests/leak_corpus/corpus.h). */
__attribute__((noinline)) static void clobber_stack(void) {
  char scratch[64 * 1024];
  memset(scratch, 0, sizeof scratch);
  __asm__ volatile("" : : "r"(scratch) : "memory"); /* the zeroes count as read: memset stays */
}

int main(void) {
  signal(SIGTERM, on_term);
  hidden_while_watched();
  reported_while_watched();
  clobber_stack();
  printf("ready\n");
  fflush(stdout);
  for (int i = 0; !stop && i < 600; i++) {
    struct timespec pause = {0, 100 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  return 0;
}
