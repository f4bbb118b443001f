// A program that uses SIGPWR itself, run under scans (the signal fallback's suspend signal).
//   handler: installs its own SIGPWR handler and sends itself 20 SIGPWRs over 2 s; all arrive.
//   ignore:  ignores SIGPWR, then receives 5 stray SIGPWRs after scans have run; it lives.
//   reset:   installs a handler, then resets SIGPWR to SIG_DFL and waits across more scans.
//   raw-block: a thread blocks every signal with a raw rt_sigprocmask (no libc wrapper to see it)
//            and waits 3.5 s: ptrace stops it anyway; the signal fallback cannot, and says why.
// Prints what it saw; the integration test compares with a plain run.
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_received;

static void on_sigpwr(int signal) {
  (void)signal;
  ++g_received;
}

// Busy work with allocations, so periodic scans find the thread running, not asleep.
static void churn_for(double seconds) {
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  void* volatile keep = NULL;
  do {
    free(keep);
    keep = malloc(128);
    clock_gettime(CLOCK_MONOTONIC, &now);
  } while ((double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
  free(keep);
}

static void* block_everything_raw(void* unused) {
  (void)unused;
  uint64_t all = ~(uint64_t)0;
  syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, NULL, sizeof(all));
  churn_for(3.5);
  return NULL;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "handler";
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  sigemptyset(&action.sa_mask);
  if (strcmp(mode, "handler") == 0) {
    action.sa_handler = on_sigpwr;
    sigaction(SIGPWR, &action, NULL);
    for (int i = 0; i < 20; ++i) {
      churn_for(0.1);
      kill(getpid(), SIGPWR);
    }
    churn_for(0.2);
    printf("received %d of 20 SIGPWR\n", (int)g_received);
  } else if (strcmp(mode, "ignore") == 0) {
    action.sa_handler = SIG_IGN;
    sigaction(SIGPWR, &action, NULL);
    churn_for(0.6);
    for (int i = 0; i < 5; ++i) kill(getpid(), SIGPWR);
    churn_for(0.3);
    printf("alive after 5 stray SIGPWR\n");
  } else if (strcmp(mode, "reset") == 0) {
    action.sa_handler = on_sigpwr;
    sigaction(SIGPWR, &action, NULL);
    churn_for(0.5);
    action.sa_handler = SIG_DFL;
    sigaction(SIGPWR, &action, NULL);
    churn_for(1.0);
    printf("alive with SIGPWR reset to SIG_DFL\n");
  } else if (strcmp(mode, "raw-block") == 0) {
    pthread_t thread;
    pthread_create(&thread, NULL, block_everything_raw, NULL);
    pthread_join(thread, NULL);
    printf("the thread that blocked every signal finished\n");
  } else {
    fprintf(stderr, "usage: %s handler|ignore|reset|raw-block\n", argv[0]);
    return 2;
  }
  return 0;
}
