/* shared_stack_mapping: stacks that share one mapping, each holding the only pointer to a block
 * in a frame while a scan runs.
 *
 * Modes (each block 4000 bytes with a pattern, checked after 0.8 s of scans, then freed):
 *   guard-size-0  eight threads made with pthread_attr_setguardsize(0), each holding its block in
 *                 a frame while it sleeps: glibc maps their stacks side by side and the kernel
 *                 merges them into one mapping
 *   stack-slices  eight threads on slices of one mmap (pthread_attr_setstack), likewise
 *   coroutines    a coroutine on the lower slice of a two-slice mmap holds its block and yields;
 *                 the main thread then sleeps on the upper slice (ucontext, as libco-style stack
 *                 pools do)
 * A scan that took everything below one stopped thread's stack pointer in the mapping for dead
 * frames dropped the stacks below it: their blocks (and glibc's per-thread blocks, kept by thread
 * control blocks at the top of each stack) were reported leaked and, in collect mode, freed.
 * Without heapkeeper every mode prints "<mode>: blocks intact" and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>

#include "held_block.h"

#define THREADS 8
#define SLICE (256 * 1024)

static __attribute__((noinline)) unsigned char* new_block(void) {
  unsigned char* block = malloc(BLOCK_BYTES);
  if (block == NULL) exit(2);
  fill(block);
  return block;
}

/* Checks and frees the block; 1 when it was intact. */
static int check_block(unsigned char* block) {
  const int ok = intact(block, 0);
  free(block);
  return ok;
}

static void* hold_block(void* unused) {
  (void)unused;
  unsigned char* volatile block = new_block(); /* only in this frame while the thread sleeps */
  pause_ms(WAIT_MS);
  return (void*)(long)check_block(block);
}

static int threads(const char* mode, int slices) {
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  char* pool = NULL;
  if (slices) {
    pool = mmap(NULL, (size_t)THREADS * SLICE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pool == MAP_FAILED) return 2;
  } else {
    pthread_attr_setguardsize(&attributes, 0);
  }
  pthread_t thread[THREADS];
  for (int i = 0; i < THREADS; ++i) {
    if (slices) pthread_attr_setstack(&attributes, pool + (size_t)i * SLICE, SLICE);
    if (pthread_create(&thread[i], &attributes, hold_block, NULL) != 0) return 2;
  }
  int ok = 1;
  for (int i = 0; i < THREADS; ++i) {
    void* result = NULL;
    pthread_join(thread[i], &result);
    ok &= result != NULL;
  }
  printf("%s: %s\n", mode, ok ? "blocks intact" : "BLOCKS DAMAGED");
  return ok ? 0 : 1;
}

static ucontext_t main_context, holder_context, sleeper_context;
static int coroutine_ok;

static void holder(void) {
  unsigned char* volatile block = new_block(); /* only in this frame while it is suspended */
  /* swapcontext saves the scratch registers too, into a global: no copy of the pointer may be left
   * in one (the block would be reachable from holder_context, whatever the stacks). */
  __asm__ volatile(
      "xor %%eax, %%eax\n\txor %%ecx, %%ecx\n\txor %%edx, %%edx\n\txor %%esi, %%esi\n\t"
      "xor %%edi, %%edi\n\txor %%r8d, %%r8d\n\txor %%r9d, %%r9d\n\txor %%r10d, %%r10d\n\t"
      "xor %%r11d, %%r11d"
      :
      :
      : "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory");
  swapcontext(&holder_context, &main_context);
  coroutine_ok = check_block(block);
}

static void sleeper(void) { pause_ms(WAIT_MS); }

static int coroutines(void) {
  char* pool = mmap(NULL, 2 * SLICE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (pool == MAP_FAILED) return 2;
  getcontext(&holder_context);
  holder_context.uc_stack.ss_sp = pool;
  holder_context.uc_stack.ss_size = SLICE;
  holder_context.uc_link = &main_context;
  makecontext(&holder_context, holder, 0);
  getcontext(&sleeper_context);
  sleeper_context.uc_stack.ss_sp = pool + SLICE;
  sleeper_context.uc_stack.ss_size = SLICE;
  sleeper_context.uc_link = &main_context;
  makecontext(&sleeper_context, sleeper, 0);
  swapcontext(&main_context, &holder_context);  /* the holder allocates and yields */
  swapcontext(&main_context, &sleeper_context); /* the scans run while the sleeper sleeps */
  swapcontext(&main_context, &holder_context);  /* the holder checks its block */
  printf("coroutines: %s\n", coroutine_ok ? "blocks intact" : "BLOCKS DAMAGED");
  return coroutine_ok ? 0 : 1;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "guard-size-0") == 0) return threads(mode, 0);
  if (strcmp(mode, "stack-slices") == 0) return threads(mode, 1);
  if (strcmp(mode, "coroutines") == 0) return coroutines();
  fprintf(stderr, "usage: shared_stack_mapping guard-size-0|stack-slices|coroutines\n");
  return 2;
}
