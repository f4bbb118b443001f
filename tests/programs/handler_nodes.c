// A timer's signal handler allocates list nodes while the main thread churns through malloc and
// free, so that many of its calls land inside the allocator. Afterwards each node alone holds the
// only pointer to a block of data; the program sleeps through a few scans, then checks that every
// block still holds its bytes and that no new allocation is handed one of them.
//
// Under heapkeeper a handler that interrupts heapkeeper's own code (capturing a stack, recording a
// block) got its node from heapkeeper's internal memory, which scans do not read: the data blocks
// looked leaked, and collect mode freed them under the program (never_invented.sh handler_nodes).
//
// glibc's malloc may not be called from a handler that interrupted it, so without heapkeeper (no
// heapkeeper_heap_stats to find) the churn blocks the signal around its own calls: the output is
// the same either way.
//
//   handler_nodes               the handler on the thread's stack
//   handler_nodes big_frame     the handler's malloc 160 KiB below its frame's start (a large local
//                               buffer): the signal frame lies far from the call
//   handler_nodes raw_altstack  the handler on an alternate stack registered with the raw system
//                               call, which heapkeeper's sigaltstack wrapper does not see
// (found by an adversarial round, helper-62: each lost blocks as the first version did)
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum { kNodes = 600, kDataBytes = 48, kFresh = 20000 };

struct node {
  struct node* next;
  char* data;
};

static struct node* volatile nodes[kNodes];
static volatile sig_atomic_t node_count;
static void* fresh[kFresh];

static int big_frame;

// malloc below a 160 KiB buffer, which the compiler cannot drop.
__attribute__((noinline)) static void* malloc_under_big_frame(size_t size) {
  volatile char buffer[160 * 1024];
  buffer[0] = 1;
  buffer[sizeof buffer - 1] = buffer[0];
  return malloc(size);
}

static void on_alarm(int signal_number) {
  (void)signal_number;
  if (node_count >= kNodes) return;
  struct node* n = big_frame ? malloc_under_big_frame(sizeof *n) : malloc(sizeof *n);
  if (n == NULL) return;
  n->next = NULL;
  n->data = NULL;
  nodes[node_count] = n;
  node_count = node_count + 1;
}

int main(int argc, char** argv) {
  const int traced = dlsym(RTLD_DEFAULT, "heapkeeper_heap_stats") != NULL;
  const char* variant = argc > 1 ? argv[1] : "";
  big_frame = strcmp(variant, "big_frame") == 0;
  int action_flags = SA_RESTART;
  if (strcmp(variant, "raw_altstack") == 0) {
    static char alternate[256 * 1024];
    const stack_t stack = {.ss_sp = alternate, .ss_flags = 0, .ss_size = sizeof alternate};
    syscall(SYS_sigaltstack, &stack, NULL);
    action_flags |= SA_ONSTACK;
  }
  sigset_t alarm_only, previous;
  sigemptyset(&alarm_only);
  sigaddset(&alarm_only, SIGALRM);
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_alarm;
  action.sa_flags = action_flags;
  sigaction(SIGALRM, &action, NULL);
  const struct itimerval every_200us = {{0, 200}, {0, 200}};
  setitimer(ITIMER_REAL, &every_200us, NULL);
  for (long i = 0; i < 20000000 && node_count < kNodes; ++i) {
    if (!traced) sigprocmask(SIG_BLOCK, &alarm_only, &previous);
    void* p = malloc(16 + (size_t)(i % 200));
    free(p);
    if (!traced) sigprocmask(SIG_SETMASK, &previous, NULL);
  }
  const struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  const int count = node_count;

  for (int i = 0; i < count; ++i) {
    nodes[i]->data = malloc(kDataBytes);
    memset(nodes[i]->data, 'A' + i % 26, kDataBytes - 1);
    nodes[i]->data[kDataBytes - 1] = '\0';
  }
  // A few scans while the nodes alone hold the data.
  const struct timespec pause = {1, 200000000};
  nanosleep(&pause, NULL);

  int damaged = 0;
  for (int i = 0; i < count; ++i) {
    const char* data = nodes[i]->data;
    if (strlen(data) != kDataBytes - 1 || data[0] != 'A' + i % 26 || data[kDataBytes - 2] != 'A' + i % 26) ++damaged;
  }
  int handed_out_again = 0;
  for (int j = 0; j < kFresh; ++j) {
    fresh[j] = malloc(kDataBytes);
    for (int i = 0; i < count; ++i) handed_out_again += fresh[j] == nodes[i]->data;
  }
  printf("handler nodes: %s\n", count == kNodes ? "all made" : "too few");
  printf("data blocks damaged: %d\n", damaged);
  printf("data blocks handed out again: %d\n", handed_out_again);

  for (int j = 0; j < kFresh; ++j) free(fresh[j]);
  for (int i = 0; i < count; ++i) {
    free(nodes[i]->data);
    free(nodes[i]);
  }
  return damaged == 0 && handed_out_again == 0 ? 0 : 1;
}
