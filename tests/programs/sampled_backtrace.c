/* A frame holding an in-order copy of its callers, for tests/integration/stack_attribution.sh.
 *
 * record() keeps a backtrace() of its callers in a local array, but only on its first call (as
 * a sampling profiler or a log-once would); later calls leave the array as it was. Its callers
 * via_a and via_b have the same frame size and are called from the same call site, so record()
 * runs at the same stack pointer under either. The cache's image of a stack ends at the first
 * in-order copy of the callers' return addresses, here the array: the real return-address slots
 * above it are never checked. Frame pointers everywhere, no alloca, no moved frame.
 * via_a allocates 1000-byte blocks, via_b 2000-byte ones; all leak.
 *
 * Usage: sampled_backtrace ROUNDS
 */
#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>

static void* volatile sink;
static int sampled;

__attribute__((noinline)) void* record(size_t bytes) {
  void* callers[16];
  if (!sampled) {
    sampled = 1;
    backtrace(callers, 16);
  }
  __asm__ volatile("" : : "r"(callers) : "memory");
  return malloc(bytes);
}

__attribute__((noinline)) void* via_a(void) {
  void* block = record(1000);
  __asm__ volatile("" : : "r"(block) : "memory");
  return block;
}

__attribute__((noinline)) void* via_b(void) {
  void* block = record(2000);
  __asm__ volatile("" : : "r"(block) : "memory");
  return block;
}

static void* (*volatile paths[2])(void) = {via_a, via_b};

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: sampled_backtrace ROUNDS\n");
    return 2;
  }
  const int rounds = atoi(argv[1]);
  for (int i = 0; i < rounds; ++i) sink = paths[i % 2]();
  sink = NULL;
  return 0;
}
