/* reachable_thread_stack: a block whose only pointer is a local variable of another thread, which
 * is blocked on a condition variable when the program exits. Not a leak.
 *
 * corpus: expect direct=0 indirect=0 bytes=0
 */
#include <pthread.h>
#include <stdlib.h>

#include "corpus.h"

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_changed = PTHREAD_COND_INITIALIZER;
static int g_ready;

static CORPUS_NOINLINE void* make_block(void) {
  void* block = malloc(333);
  corpus_fill(block, 333);
  return block;
}

static void* holder(void* unused) {
  (void)unused;
  void* volatile local = make_block();
  corpus_clobber_stack(); /* only `local` is left pointing to the block */
  pthread_mutex_lock(&g_lock);
  g_ready = 1;
  pthread_cond_broadcast(&g_changed);
  for (;;) pthread_cond_wait(&g_changed, &g_lock); /* until the process exits */
  return local;
}

int main(void) {
  pthread_t thread;
  if (pthread_create(&thread, NULL, holder, NULL) != 0) return 2;
  pthread_mutex_lock(&g_lock);
  while (!g_ready) pthread_cond_wait(&g_changed, &g_lock);
  pthread_mutex_unlock(&g_lock);
  return 0;
}
