/* leak_in_key_destructor: a thread's pthread-key destructor, which runs while the thread exits,
 * loses a block that holds the only pointer to another. Both are reported like any other leak, with
 * the destructor's allocation stack (heapkeeper once served such late allocations untracked).
 *
 * corpus: expect direct=1 indirect=1 bytes=499
 * corpus: direct-leak-in lose_in_key_destructor
 */
#include <pthread.h>
#include <stdlib.h>

#include "corpus.h"

static pthread_key_t key;

static CORPUS_NOINLINE void lose_in_key_destructor(void) {
  char** volatile block = malloc(444);
  corpus_fill(block, 444);
  block[0] = malloc(55);
  corpus_fill(block[0], 55);
  block = NULL;
}

static void destructor(void* value) {
  (void)value;
  lose_in_key_destructor();
  /* glibc caches the stacks of exited threads; a stale copy there would keep the block alive. */
  corpus_clobber_stack();
}

static void* worker(void* unused) {
  (void)unused;
  pthread_setspecific(key, &key);
  return NULL;
}

int main(void) {
  if (pthread_key_create(&key, destructor) != 0) return 2;
  pthread_t thread;
  if (pthread_create(&thread, NULL, worker, NULL) != 0) return 3;
  if (pthread_join(thread, NULL) != 0) return 4;
  corpus_clobber_stack();
  return 0;
}
