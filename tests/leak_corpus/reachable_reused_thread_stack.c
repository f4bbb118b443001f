/* reachable_reused_thread_stack: a thread runs on a stack the program supplied
 * (pthread_attr_setstack on an anonymous mapping) and exits; the program then reuses that memory
 * as a pool and keeps a block's only pointer there. Unlike the stacks glibc allocates and keeps
 * after their threads exit (which are no roots), this memory is the program's again: not a leak.
 *
 * corpus: expect direct=0 indirect=0 bytes=0
 */
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "corpus.h"

enum { kStackBytes = 256 * 1024 };

void** volatile g_pool;

static void* run_briefly(void* unused) {
  (void)unused;
  return NULL;
}

static CORPUS_NOINLINE int keep_in_former_stack(void) {
  void* stack = mmap(NULL, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (stack == MAP_FAILED) return 0;
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  if (pthread_attr_setstack(&attributes, stack, kStackBytes) != 0) return 0;
  pthread_t thread;
  if (pthread_create(&thread, &attributes, run_briefly, NULL) != 0) return 0;
  pthread_attr_destroy(&attributes);
  if (pthread_join(thread, NULL) != 0) return 0;
  /* The thread is gone: its stack is plain memory of the program's, used as a pool from the bottom. */
  g_pool = stack;
  g_pool[512] = malloc(555);
  corpus_fill(g_pool[512], 555);
  g_pool = NULL; /* the mapping is found as an anonymous mapping, not through this pointer */
  return 1;
}

int main(void) {
  if (!keep_in_former_stack()) return 2;
  corpus_clobber_stack();
  return 0;
}
