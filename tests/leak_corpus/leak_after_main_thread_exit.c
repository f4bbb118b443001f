/* leak_after_main_thread_exit: the main thread calls pthread_exit while a worker goes on — legal,
 * and common in programs whose main only starts threads. The leader then stays a zombie until the
 * process ends, and the kernel's files of the process (/proc/PID/maps, process_vm_readv on the
 * pid) read empty: a scanner that reads its own memory through the pid sees no roots at all and
 * calls every block leaked, and a symbolizer that reads /proc/PID/maps names no function.
 * The worker keeps ten blocks in a global and a chain in a static list, loses one, and lets
 * periodic scans run (every 50 ms, ptrace refusing to seize the zombie leader) before it exits.
 *
 * corpus: expect direct=1 indirect=0 bytes=77
 * corpus: direct-leak-in lose_after_main_exit
 * corpus: env HEAPKEEPER_SCAN_INTERVAL=50ms
 * corpus: stderr-before heapkeeper\[\d+\]: scan \d+: 1 new leaked blocks ||| corpus: exiting
 * corpus: json scans >= 4
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "corpus.h"

struct node {
  struct node* next;
  char payload[40];
};

static void* volatile kept[10];
static struct node* volatile chain;

static CORPUS_NOINLINE void lose_after_main_exit(void) {
  char* volatile block = malloc(77);
  corpus_fill(block, 77);
  block = NULL;
}

static CORPUS_NOINLINE void keep_blocks(void) {
  for (int i = 0; i < 10; ++i) kept[i] = malloc(100 + (size_t)i);
  for (int i = 0; i < 5; ++i) {
    struct node* n = malloc(sizeof *n);
    n->next = chain;
    chain = n;
  }
}

static void* worker(void* unused) {
  (void)unused;
  keep_blocks();
  lose_after_main_exit();
  corpus_clobber_stack();
  struct timespec pause = {0, 400 * 1000 * 1000};
  while (nanosleep(&pause, &pause) != 0) {
  }
  fprintf(stderr, "corpus: exiting\n");
  exit(0);
}

int main(void) {
  pthread_t thread;
  if (pthread_create(&thread, NULL, worker, NULL) != 0) return 2;
  pthread_exit(NULL);
}
