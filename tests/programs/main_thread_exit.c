/* main_thread_exit: a program whose main thread ends with pthread_exit, for programs.sh.
 *   alone    the main thread allocates and calls pthread_exit: glibc ends the process (exit(0))
 *   worker   a worker thread is still running and ends the process when its function returns
 *   churn    2,000 short threads come and go while the main thread lives on, then it returns 7
 *   timer    a SIGEV_THREAD timer's callback (on a thread glibc makes itself, not through
 *            pthread_create) runs after the main thread's pthread_exit and ends with exit(7)
 *   destructors  the last thread's key destructor re-arms itself: glibc runs it 4 rounds, then ends
 *            the process (heapkeeper's own key, created first, is done after its 4th round)
 *   atexit   an exit handler that allocates and frees, run when the process ends after main's
 *            pthread_exit (under heapkeeper on the thread that saw the last one go)
 * glibc counts every thread pthread_create made, heapkeeper's own too: under heapkeeper such a
 * process never ended (and, its remaining threads blocking every signal, SIGTERM did not end it). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

static void timer_fired(union sigval unused) {
  (void)unused;
  printf("timer fired\n");
  fflush(stdout);
  exit(7);
}

static pthread_key_t g_key;
static int g_rounds;

static void rearming_destructor(void* unused) {
  (void)unused;
  char line[32];
  const int length = snprintf(line, sizeof line, "destructor round %d\n", ++g_rounds);
  if (write(1, line, (size_t)length) != length) _exit(3);
  pthread_setspecific(g_key, &g_rounds);
}

static void* armed_worker(void* unused) {
  (void)unused;
  usleep(100000);
  pthread_setspecific(g_key, &g_rounds);
  return NULL;
}

static void allocating_handler(void) {
  for (int i = 0; i < 1000; ++i) {
    char* block = malloc(100 + (size_t)i);
    if (block == NULL) _exit(3);
    memset(block, 1, 100);
    if (i % 2 == 0)
      free(block);
    else
      kept = block;
  }
  printf("handler done\n");
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "alone";
  kept = malloc(10);
  if (strcmp(mode, "alone") == 0) {
    printf("main leaves\n");
    fflush(stdout);
    pthread_exit(NULL);
  }
  if (strcmp(mode, "atexit") == 0) {
    atexit(allocating_handler);
    printf("main leaves\n");
    fflush(stdout);
    pthread_exit(NULL);
  }
  if (strcmp(mode, "timer") == 0) {
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_THREAD;
    event.sigev_notify_function = timer_fired;
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &event, &timer) != 0) return 2;
    struct itimerspec when;
    memset(&when, 0, sizeof when);
    when.it_value.tv_nsec = 100000000;
    if (timer_settime(timer, 0, &when, NULL) != 0) return 2;
    pthread_exit(NULL);
  }
  if (strcmp(mode, "destructors") == 0) {
    pthread_t thread;
    if (pthread_key_create(&g_key, rearming_destructor) != 0) return 2;
    if (pthread_create(&thread, NULL, armed_worker, NULL) != 0) return 2;
    pthread_detach(thread);
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
