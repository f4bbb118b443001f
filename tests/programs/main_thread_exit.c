/* main_thread_exit: a program whose main thread ends with pthread_exit, for programs.sh.
 *   alone    the main thread allocates and calls pthread_exit: glibc ends the process (exit(0))
 *   worker   a worker thread is still running and ends the process when its function returns
 *   churn    2,000 short threads come and go while the main thread lives on, then it returns 7
 * glibc counts every thread pthread_create made, heapkeeper's own too: under heapkeeper such a
 * process never ended (and, its remaining threads blocking every signal, SIGTERM did not end it). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void* volatile kept;

static void* worker(void* unused) {
  (void)unused;
  usleep(100000);
  printf("worker done\n");
  fflush(stdout);
  kept = malloc(24);
  return NULL;
}

static void* quick(void* unused) {
  (void)unused;
  free(malloc(16));
  return NULL;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "alone";
  kept = malloc(10);
  if (strcmp(mode, "alone") == 0) {
    printf("main leaves\n");
    fflush(stdout);
    pthread_exit(NULL);
  }
  if (strcmp(mode, "worker") == 0) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, worker, NULL) != 0) return 2;
    pthread_exit(NULL);
  }
  for (int i = 0; i < 2000; ++i) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, quick, NULL) != 0) return 2;
    if (i % 2 == 0)
      pthread_join(thread, NULL);
    else
      pthread_detach(thread);
  }
  usleep(100000);
  printf("main done\n");
  return 7;
}
