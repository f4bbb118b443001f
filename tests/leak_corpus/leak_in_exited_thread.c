/* leak_in_exited_thread: a thread loses a block and exits; the main thread joins it and goes on.
 * The leak is reported with the thread's allocation stack.
 *
 * corpus: expect direct=1 indirect=0 bytes=333
 * corpus: direct-leak-in lose_in_thread
 */
#include <pthread.h>
#include <stdlib.h>

#include "corpus.h"

static CORPUS_NOINLINE void lose_in_thread(void) {
  char* volatile block = malloc(333);
  corpus_fill(block, 333);
  block = NULL;
}

static void* worker(void* unused) {
  (void)unused;
  lose_in_thread();
  /* No clobbering: glibc keeps the stack of an exited thread, stale copy of the pointer and all,
   * and the scan must not take what an exited thread left there for a reference. */
  return NULL;
}

int main(void) {
  pthread_t thread;
  if (pthread_create(&thread, NULL, worker, NULL) != 0) return 2;
  if (pthread_join(thread, NULL) != 0) return 3;
  corpus_clobber_stack();
  return 0;
}
