/* deep_recursion: allocates and frees N blocks, each from the bottom of a recursion DEPTH to
 * DEPTH + 2 calls deep, for integration/stack_cache_reach.sh.
 *
 * Built twice, with frame pointers (as every test program) and without. With frame pointers each
 * of the recursion's frames keeps the caller's frame pointer just below its return address, which
 * the stack cache checks as a link (allocator/stack_capture.cpp): a 24-frame stack needs 24
 * checked words and 24 links, and more with stale copies of return addresses in the frames'
 * uninitialised buffers. Three stacks in turn, each seen N / 3 times.
 *
 * Usage: deep_recursion N DEPTH
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static void* descend(int depth, int i) {
  char scratch[48];
  memset(scratch, depth, sizeof scratch);
  if (depth > 0) {
    void* block = descend(depth - 1, i);
    __asm__ volatile("" : : "r"(scratch) : "memory");  // keep the frame and its buffer
    return block;
  }
  return malloc(32 + (size_t)(i & 63));
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s N DEPTH\n", argv[0]);
    return 2;
  }
  const int n = atoi(argv[1]), depth = atoi(argv[2]);
  unsigned long sum = 0;
  for (int i = 0; i < n; ++i) {
    void* block = descend(depth + i % 3, i);
    sum += (unsigned long)(block != NULL);
    free(block);
  }
  printf("%lu blocks\n", sum);
  return 0;
}
