/* Leaks blocks whose last copies are stale: left in dead stack slots of deep calls, and in the
 * saved vector registers a thread inherits — as a program leaves them without meaning to.
 *
 * Usage: stale_stack_leaker [THREADS]      (default 3)
 *
 * Each worker thread allocates kPerThread blocks in a call several frames deep, keeps their
 * pointers in that frame's locals, returns without freeing them and exits; the main thread joins
 * it. glibc keeps an exited thread's stack in its cache for the next pthread_create, untouched, so
 * the pointers are still there at exit — but no thread can reach them: every block is a leak.
 * Before the first worker starts, main copies pointers to blocks it then frees through the vector
 * registers (memcpy of an array of them), which the worker inherits at clone and the dynamic
 * linker's lazy binding saves on the worker's stack; the freed blocks' memory is then reused for
 * the blocks that will leak. Main also leaves kPerThread lost pointers in dead slots of its own
 * deep calls before returning. Nothing is cleared on purpose.
 *
 * Expected at exit: (THREADS + 1) * kPerThread leaked blocks of kLeakBytes, all allocated in
 * lose_blocks, and nothing else. Prints the expected count on stdout.
 *
 * Built at -O0: every local is really stored in its frame, and nothing is optimised away.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))

enum { kPerThread = 8, kLeakBytes = 200, kReusedBlocks = 64, kMaxThreads = 16 };

/* Allocates kPerThread blocks, keeps them only in this frame, and loses them by returning. */
static NOINLINE void lose_blocks(unsigned seed) {
  void* volatile kept[kPerThread];
  for (int i = 0; i < kPerThread; ++i) {
    kept[i] = malloc(kLeakBytes);
    if (kept[i] == NULL) abort();
    memset(kept[i], (int)(0x11 + ((seed + (unsigned)i) & 0x3f)), kLeakBytes); /* never a pointer */
  }
}

/* A few frames of depth, each with its own locals, so the lost pointers sit well below the
 * caller's frame (as a program's deep call chains leave them). */
static NOINLINE void descend(int depth, unsigned seed) {
  volatile char padding[160];
  padding[0] = (char)depth;
  if (depth > 0)
    descend(depth - 1, seed);
  else
    lose_blocks(seed);
  padding[1] = padding[0];
}

static void* worker(void* argument) {
  descend(4, (unsigned)(uintptr_t)argument);
  return NULL;
}

/* Blocks of the leaked blocks' size class, whose pointers pass through the vector registers
 * (memcpy of the array) and which are then freed: their memory goes to the blocks lost next. */
static NOINLINE void churn_through_vector_registers(void) {
  void* blocks[kReusedBlocks];
  void* volatile copy[kReusedBlocks];
  for (int i = 0; i < kReusedBlocks; ++i) {
    blocks[i] = malloc(kLeakBytes);
    if (blocks[i] == NULL) abort();
  }
  memcpy((void*)copy, blocks, sizeof blocks);
  for (int i = kReusedBlocks - 1; i >= 0; --i) free(copy[i]);
}

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 3;
  if (threads < 0 || threads > kMaxThreads) {
    fprintf(stderr, "usage: stale_stack_leaker [THREADS <= %d]\n", kMaxThreads);
    return 2;
  }
  churn_through_vector_registers();
  /* All at once: each runs on a stack of its own, not on the cached stack of the one before. */
  pthread_t thread[kMaxThreads];
  for (int t = 0; t < threads; ++t) {
    if (pthread_create(&thread[t], NULL, worker, (void*)(uintptr_t)(t + 1)) != 0) return 3;
  }
  for (int t = 0; t < threads; ++t) {
    if (pthread_join(thread[t], NULL) != 0) return 4;
  }
  descend(4, 0);
  printf("leaked %d blocks of %d bytes from lose_blocks\n", (threads + 1) * kPerThread, kLeakBytes);
  return 0;
}
