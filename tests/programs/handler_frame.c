/* A signal handler's allocations through its signal frame, for tests/integration/stack_attribution.sh.
 *
 * A second thread signals the main thread while it spins in `spin` (no frame of its own), called
 * from via_a or via_b, two callers of different frame sizes; the handler, on the main thread's own
 * stack, allocates. The kernel aligns the signal frame to 64 bytes, so the handler runs at the same
 * stack pointer on both paths, above interrupted frames of different sizes whose slots lie
 * elsewhere: a cache that took such a stack as unchanged put every block under the first path's
 * stack. The handler allocates 1000-byte blocks under via_a and 2000-byte ones under via_b, and all
 * of them leak: a leak group under via_a must hold only 1000-byte blocks, one under via_b only
 * 2000-byte ones.
 *
 * Usage: handler_frame ROUNDS
 */
#include <alloca.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void* volatile sink;
static volatile uintptr_t inner_sp;
static volatile size_t block_bytes;
static volatile int signalled, requests, answered;
static pthread_t main_thread;

__attribute__((noinline)) void* inner(size_t bytes) {
  void* block = malloc(bytes);
  volatile char here;
  inner_sp = (uintptr_t)&here;
  __asm__ volatile("" : : "r"(block) : "memory");
  return block;
}

static void handler(int signal_number) {
  (void)signal_number;
  sink = inner(block_bytes);
  signalled = 1;
}

/* Asks for the signal and waits for the handler, with no frame of its own. */
__attribute__((noinline, optimize("omit-frame-pointer"))) void spin(void) {
  __atomic_add_fetch(&requests, 1, __ATOMIC_SEQ_CST);
  while (!__atomic_load_n(&signalled, __ATOMIC_SEQ_CST)) {
  }
}

__attribute__((noinline)) void via_a(void) {
  volatile char pad[16];
  pad[0] = 1;
  spin();
  __asm__ volatile("" : : "r"(pad) : "memory");
}

__attribute__((noinline)) void via_b(void) {
  spin();
  __asm__ volatile("" : : : "memory");
}

static void (*volatile paths[2])(void) = {via_a, via_b};

__attribute__((noinline)) void* call_path(int path) {
  block_bytes = path == 0 ? 1000 : 2000;
  signalled = 0;
  paths[path]();
  return sink;
}

static void* signaller(void* unused) {
  (void)unused;
  for (;;) {
    const int wanted = __atomic_load_n(&requests, __ATOMIC_SEQ_CST);
    if (wanted == answered) {
      sched_yield();
      continue;
    }
    answered = wanted;
    pthread_kill(main_thread, SIGUSR1);
  }
  return NULL;
}

/* As realigned_frame.c's run: ROUNDS 0 compares where the handler runs on both paths. */
__attribute__((noinline)) int run(size_t shift, int rounds) {
  char* moved = alloca(shift + 1);
  moved[0] = 0;
  __asm__ volatile("" : : "r"(moved) : "memory");
  if (rounds == 0) {
    free(call_path(0));
    const uintptr_t at_a = inner_sp;
    free(call_path(1));
    return at_a == inner_sp;
  }
  for (int i = 0; i < rounds; ++i) call_path(i % 2);
  sink = NULL;
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: handler_frame ROUNDS\n");
    return 2;
  }
  const int rounds = atoi(argv[1]);
  main_thread = pthread_self();
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = handler;
  sigaction(SIGUSR1, &action, NULL);
  pthread_t thread;
  pthread_create(&thread, NULL, signaller, NULL);
  for (size_t shift = 0; shift < 64; shift += 16) {
    if (run(shift, 0)) return run(shift, rounds) ? 0 : 1;
  }
  fprintf(stderr, "handler_frame: could not bring the two paths to the same stack pointer\n");
  return 1;
}
