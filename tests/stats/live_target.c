// A small program for the live-stats tests: it makes a known number of allocations, keeps some,
// leaks a few on purpose, then waits so that `heapkeeper stats/scan/report/view` can look at it.
//
//   live_target N K SECONDS [churn]
// makes exactly N allocations from make_record() and keeps the first K of them reachable (in a
// global array), then makes kLeakedBlocks more from leak_buffers() whose pointers it drops, and
// sleeps SECONDS. With "churn", a named worker thread ("churner") allocates and frees a block
// every few milliseconds meanwhile, so that rates, the chart and the threads tab have something
// to show. It prints "ready" on stdout once its fixed allocations are done. SIGUSR1 ends the
// sleep early with a normal exit (atexit handlers run, so heapkeeper removes its segment).
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { kLeakedBlocks = 16, kLeakedSize = 3000 };

void** g_records;  // the K kept blocks: reachable through this global
static volatile int g_stop;
static volatile sig_atomic_t g_finish;

static void on_finish(int signal_number) {
  (void)signal_number;
  g_finish = 1;
}

__attribute__((noinline)) void* make_record(size_t size) {
  char* p = malloc(size);
  if (p != NULL) memset(p, 0x5a, size);
  return p;
}

__attribute__((noinline)) void allocate_records(long n, long k) {
  g_records = calloc((size_t)k + 1, sizeof(void*));  // one more allocation, outside the N
  for (long i = 0; i < n; ++i) {
    void* p = make_record(48 + (size_t)(i % 8) * 16);
    if (i < k)
      g_records[i] = p;
    else
      free(p);
  }
}

// The blocks are linked so the scanner has one direct leak (the head) and indirect ones; the
// only pointer to the head lives in this frame, which scrub_stack() overwrites afterwards.
__attribute__((noinline)) void leak_buffers(void) {
  void* volatile head = NULL;
  for (int i = 0; i < kLeakedBlocks; ++i) {
    void** block = malloc(kLeakedSize);
    memset(block, 0, kLeakedSize);
    block[0] = head;
    head = block;
  }
  head = NULL;
}

__attribute__((noinline)) void scrub_stack(void) {
  volatile char buffer[16384];
  memset((char*)buffer, 0, sizeof(buffer));
}

__attribute__((noinline)) void* churn_once(size_t size) {
  char* p = malloc(size);
  if (p != NULL) p[0] = 1;
  return p;
}

static void* churner(void* unused) {
  (void)unused;
  struct timespec pause = {0, 2 * 1000 * 1000};
  while (!g_stop) {
    free(churn_once(256));
    nanosleep(&pause, NULL);
  }
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s N K SECONDS [churn]\n", argv[0]);
    return 2;
  }
  const long n = atol(argv[1]), k = atol(argv[2]), seconds = atol(argv[3]);
  const int churn = argc > 4 && strcmp(argv[4], "churn") == 0;
  if (k > n || n < 0 || k < 0) return 2;
  signal(SIGUSR1, on_finish);
  allocate_records(n, k);
  leak_buffers();
  scrub_stack();
  pthread_t thread;
  if (churn) {
    pthread_create(&thread, NULL, churner, NULL);
    pthread_setname_np(thread, "churner");
  }
  printf("ready\n");
  fflush(stdout);
  for (long i = 0; i < seconds * 10 && !g_finish; ++i) usleep(100 * 1000);
  if (churn) {
    g_stop = 1;
    pthread_join(thread, NULL);
  }
  return 0;
}
