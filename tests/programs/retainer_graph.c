/* A heap of known shape for `heapkeeper why` and retained sizes (tests/integration/why.sh):
 *
 *   global global_tree -> A -> B -> S -> P      A, B, C, S: 64-byte tree nodes (make_tree_node)
 *                          A -> C -> S          P: a 1000-byte payload (make_payload)
 *   thread "holder", on its stack: L3 -> L2 -> L1   64-byte list nodes (make_list_node)
 *   a 77-byte block nothing points to (make_lost): leaked
 *
 * So A retains A, B, C, S and P (1256 bytes); S retains S and P (1064); B and C only themselves,
 * though together (one allocation site: made in one loop) they retain S and P too (1192).
 * Everything is built in functions that return nothing, and the stack is scrubbed, so that no
 * stale pointer in main's frames or registers adds a root; the addresses printed are kept
 * scrambled. Prints "ready S=0x... lost=0x..." and waits for SIGTERM or SIGINT. Built without
 * sibling calls, so make_* keep their frames. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct node {
  struct node* kids[2];
  char pad[48];
};

struct node* global_tree;
static uintptr_t shared_address, lost_address;
#define SCRAMBLE 0x5a5a5a5a5a5a5a5aULL /* no heap address once applied */
static int ready_pipe[2];

__attribute__((noinline)) struct node* make_tree_node(void) { return calloc(1, sizeof(struct node)); }
__attribute__((noinline)) struct node* make_list_node(void) { return calloc(1, sizeof(struct node)); }
__attribute__((noinline)) void* make_payload(size_t n) { return calloc(1, n); }
__attribute__((noinline)) void* make_lost(size_t n) { return calloc(1, n); }

/* Overwrites the stack below the caller's frame, where the builders' frames were. */
__attribute__((noinline)) void scrub_stack(void) {
  char area[64 * 1024];
  memset(area, 0, sizeof area);
  /* The compiler must believe the zeroes are read: with a volatile array cast to a plain pointer,
   * GCC dropped the memset and then the whole call, so nothing was ever scrubbed. */
  __asm__ volatile("" : : "r"(area) : "memory");
}

__attribute__((noinline)) void build_tree(void) {
  struct node* a = make_tree_node();
  for (volatile int i = 0; i < 2; i++) a->kids[i] = make_tree_node(); /* one call site */
  struct node* s = make_tree_node();
  a->kids[0]->kids[0] = s;
  a->kids[1]->kids[0] = s;
  s->kids[1] = make_payload(1000);
  shared_address = (uintptr_t)s ^ SCRAMBLE;
  global_tree = a;
  lost_address = (uintptr_t)make_lost(77) ^ SCRAMBLE;
}

__attribute__((noinline)) struct node* build_list(void) {
  struct node* head = NULL;
  for (volatile int i = 0; i < 3; i++) { /* one call site */
    struct node* n = make_list_node();
    n->kids[0] = head;
    head = n;
  }
  return head;
}

static void* holder(void* unused) {
  (void)unused;
  struct node* volatile head = build_list();
  /* Named only after its allocations, as programs often name threads late: heapkeeper's reports
   * must show the name the thread has, not the one it had when it first allocated. */
  pthread_setname_np(pthread_self(), "holder");
  scrub_stack();
  char done = 1;
  if (write(ready_pipe[1], &done, 1) != 1) return NULL;
  for (;;) pause();
  return (void*)head;
}

int main(void) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, NULL); /* the holder thread inherits the mask */
  if (pipe(ready_pipe) != 0) return 1;
  build_tree();
  pthread_t thread;
  if (pthread_create(&thread, NULL, holder, NULL) != 0) return 1;
  char done;
  if (read(ready_pipe[0], &done, 1) != 1) return 1;
  scrub_stack();
  printf("ready S=0x%lx lost=0x%lx\n", (unsigned long)(shared_address ^ SCRAMBLE),
         (unsigned long)(lost_address ^ SCRAMBLE));
  fflush(stdout);
  /* printf's frames kept copies of the addresses it printed, where sigwait's frame may leave them
   * (it did with the string functions glibc picks on some CPUs): a stale root for the lost block. */
  scrub_stack();
  int signal_number = 0;
  sigwait(&stop, &signal_number);
  return 0;
}
