/* Forks while other threads' allocations are being unwound for the first time.
 *
 * Usage: fork_during_unwind [FORKS]
 * Three threads start short-lived threads without pause, each of which allocates once: under
 * heapkeeper each such first allocation is unwound step by step, inside libunwind's critical
 * sections (its look-ups of unwind information under the loader's lock, its register-state pool's
 * mutex). Meanwhile the main thread forks FORKS children, each of which allocates once from a call
 * site it has not used before (an unwind that needs those sections again) and exits. A child that
 * inherited one of them held never gets it: it is killed by its alarm after 5 s and counted as
 * hung (1 in 1,000 did before heapkeeper's fork handler waited for those sections to end).
 * Output: the number of forks and of hung children, which must be 0 (exit status 1 otherwise).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int stop;

static __attribute__((noinline)) void* short_thread(void* argument) {
  (void)argument;
  void* block = malloc(24);
  __asm__ volatile("" ::"r"(block) : "memory");
  free(block);
  return NULL;
}

static void* spawner(void* argument) {
  (void)argument;
  while (!atomic_load(&stop)) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, short_thread, NULL) == 0) pthread_join(thread, NULL);
  }
  return NULL;
}

static __attribute__((noinline)) void child_allocation(int i) {
  char* block = malloc(100 + (size_t)(i % 7));
  __asm__ volatile("" ::"r"(block) : "memory");
  free(block);
}

int main(int argc, char** argv) {
  const int forks = argc > 1 ? atoi(argv[1]) : 2000;
  enum { kSpawners = 3 };
  pthread_t spawners[kSpawners];
  for (int i = 0; i < kSpawners; ++i) pthread_create(&spawners[i], NULL, spawner, NULL);
  int hung = 0, failed = 0;
  for (int i = 0; i < forks; ++i) {
    const pid_t pid = fork();
    if (pid < 0) {
      ++failed;
      continue;
    }
    if (pid == 0) {
      alarm(5);
      child_allocation(i);
      _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
    }
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) ++hung;
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < kSpawners; ++i) pthread_join(spawners[i], NULL);
  printf("%d forks (%d failed), %d children hung\n", forks, failed, hung);
  return hung != 0;
}
