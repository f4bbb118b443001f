/* A frame realigned through a DRAP register, for tests/integration/stack_attribution.sh.
 *
 * gcc realigns `realigned`'s frame (a 64-byte aligned local beside a variable-length array)
 * through a DRAP register: it copies its return address below the alignment gap and keeps its
 * frame pointer there, above the copy. main reaches it through via_a or via_b, two callers with
 * different frame sizes called through one function pointer; after the realignment, inner
 * allocates at the same stack pointer on both paths, while the slot of realigned's return address
 * itself lies above the gap, where the other path's return address may still sit. A cache that
 * checked the slots alone passed via_b's stack for via_a's once it had dropped the copies from its
 * check (stale copies, it took them for). via_a allocates 1000-byte blocks, via_b 2000-byte ones,
 * and all of them leak: a leak group under via_a must hold only 1000-byte blocks and one under
 * via_b only 2000-byte ones.
 *
 * Usage: realigned_frame ROUNDS
 */
#include <alloca.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static void* volatile sink;
static volatile uintptr_t inner_sp;

__attribute__((noinline)) void* inner(size_t bytes) {
  void* block = malloc(bytes);
  volatile char here;
  inner_sp = (uintptr_t)&here;
  __asm__ volatile("" : : : "memory");
  return block;
}

__attribute__((noinline)) void* middle(size_t bytes) {
  void* block = inner(bytes);
  __asm__ volatile("" : : : "memory");
  return block;
}

__attribute__((noinline)) void* outer(size_t bytes) {
  void* block = middle(bytes);
  __asm__ volatile("" : : : "memory");
  return block;
}

__attribute__((noinline)) void* realigned(int n, size_t bytes) {
  char variable[n];
  char aligned[64] __attribute__((aligned(64)));
  variable[0] = 1;
  aligned[0] = 2;
  __asm__ volatile("" : : "r"(aligned), "r"(variable) : "memory");
  void* block = outer(bytes);
  __asm__ volatile("" : : : "memory");
  return block;
}

__attribute__((noinline)) void* via_a(size_t bytes) {
  volatile char pad[16];
  pad[0] = 1;
  void* block = realigned(16, bytes);
  __asm__ volatile("" : : "r"(pad) : "memory");
  return block;
}

__attribute__((noinline)) void* via_b(size_t bytes) {
  void* block = realigned(16, bytes);
  __asm__ volatile("" : : : "memory");
  return block;
}

static void* (*volatile paths[2])(size_t) = {via_a, via_b};

__attribute__((noinline)) void* call_path(int path) {
  void* (*const function)(size_t) = paths[path];
  void* block = function(path == 0 ? 1000 : 2000);
  __asm__ volatile("" : : : "memory");
  return block;
}

/* Runs ROUNDS allocations (or, with ROUNDS 0, one of each path to compare where inner runs) below
 * an alloca of `shift` bytes, which moves both paths' frames by the same amount. */
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
  /* One path, then the other: the first path's stack is hit often before the second comes. */
  for (int i = 0; i < rounds; ++i) sink = call_path(i < rounds / 2 ? 0 : 1);
  sink = NULL;
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: realigned_frame ROUNDS\n");
    return 2;
  }
  const int rounds = atoi(argv[1]);
  /* The realignment rounds both paths to one 64-byte boundary unless their frames straddle it. */
  for (size_t shift = 0; shift < 64; shift += 16) {
    if (run(shift, 0)) return run(shift, rounds) ? 0 : 1;
  }
  fprintf(stderr, "realigned_frame: could not bring the two paths to the same stack pointer\n");
  return 1;
}
