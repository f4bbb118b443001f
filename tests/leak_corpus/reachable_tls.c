/* reachable_tls: blocks whose only pointers are __thread variables — the main thread's, and that
 * of a second thread still alive (blocked on a condition variable) at exit. Not leaks.
 *
 * corpus: expect direct=0 indirect=0 bytes=0
 */
#include <pthread.h>
#include <stdlib.h>

#include "corpus.h"

static __thread void* volatile tls_keep;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_changed = PTHREAD_COND_INITIALIZER;
static int g_ready;

static CORPUS_NOINLINE void keep_in_tls(size_t bytes) {
  tls_keep = malloc(bytes);
  corpus_fill(tls_keep, bytes);
}

static void* holder(void* unused) {
  (void)unused;
  keep_in_tls(222);
  corpus_clobber_stack();
  pthread_mutex_lock(&g_lock);
  g_ready = 1;
  pthread_cond_broadcast(&g_changed);
  for (;;) pthread_cond_wait(&g_changed, &g_lock); /* until the process exits */
  return NULL;
}

int main(void) {
  keep_in_tls(111);
  pthread_t thread;
  if (pthread_create(&thread, NULL, holder, NULL) != 0) return 2;
  pthread_mutex_lock(&g_lock);
  while (!g_ready) pthread_cond_wait(&g_changed, &g_lock);
  pthread_mutex_unlock(&g_lock);
  corpus_clobber_stack();
  return 0;
}
