/* fork_cached_stack: a child forked while another thread of its parent runs.
 *
 * In the child, glibc keeps that thread's stack in its cache, with its thread control block and
 * its DTV (a 304-byte block from _dl_allocate_tls), and hands both to the child's next new thread:
 * heapkeeper's scanner, deferred until the child has lived a moment. The scanner's own stack is no
 * root, but its thread control block is, or the DTV looks leaked at every scan (and collect mode
 * frees it under the thread). The child then sleeps through its scans, allocates many blocks of the
 * DTV's size (a freed DTV would be handed out again and overwritten), and runs three threads of
 * its own. Without heapkeeper: "child: threads ok" and "parent done 0", status 0.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "held_block.h"

static void* sleeper(void* unused) {
  (void)unused;
  pause_ms(300);
  return NULL;
}

int main(void) {
  pthread_t thread;
  if (pthread_create(&thread, NULL, sleeper, NULL) != 0) return 2;
  pause_ms(50);
  const pid_t child = fork();
  if (child < 0) return 2;
  if (child == 0) {
    pause_ms(1000); /* the child's periodic scans */
    enum { kCount = 20000 };
    static void* blocks[kCount];
    for (int i = 0; i < kCount; ++i) {
      blocks[i] = malloc(304);
      if (blocks[i] == NULL) _exit(2);
      memset(blocks[i], 'X', 304);
    }
    for (int k = 0; k < 3; ++k) {
      pthread_t own;
      if (pthread_create(&own, NULL, sleeper, NULL) != 0) _exit(2);
      pthread_join(own, NULL);
    }
    for (int i = 0; i < kCount; ++i) free(blocks[i]);
    puts("child: threads ok");
    fflush(stdout);
    _exit(0);
  }
  pthread_join(thread, NULL);
  int status = 0;
  waitpid(child, &status, 0);
  printf("parent done %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  return 0;
}
