/* A frame that moves under the same entry frame, for tests/integration/stack_attribution.sh.
 *
 * main reaches `moving` through via_x or via_y, two callers with different frame sizes called
 * through one function pointer; moving's alloca is sized so that the allocating function, inner,
 * runs at the same stack pointer on both paths. moving keeps a backtrace() of its eight innermost
 * callers in a local array, as an allocation wrapper that records its callers would. With the
 * other path's stale copies in moving's alloca buffer, more than eight words holding the stack's
 * return addresses lie between inner's return slot and moving's, so the saved frame pointer that
 * would link moving's slot is past the cache's reach (kLinkReach), and the slots the other path
 * used, inside moving's alloca buffer or via_x's unused locals, still hold that path's
 * return addresses. via_x allocates 1000-byte blocks, via_y 2000-byte ones, and all of them leak:
 * a leak group under via_x must hold only 1000-byte blocks and one under via_y only 2000-byte ones.
 *
 * Usage: moved_frame ROUNDS
 */
#include <alloca.h>
#include <execinfo.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static void* volatile sink;
static uintptr_t buffer_address;

__attribute__((noinline)) void* inner(size_t bytes) {
  void* block = malloc(bytes);
  __asm__ volatile("" : : "r"(block) : "memory");
  return block;
}

__attribute__((noinline)) void* moving(size_t n, size_t bytes) {
  void* callers[8];
  char* buffer = alloca(n);
  buffer_address = (uintptr_t)buffer;
  backtrace(callers, 8);
  __asm__ volatile("" : : "r"(buffer), "r"(callers) : "memory");
  void* block = inner(bytes);
  __asm__ volatile("" : : "r"(buffer), "r"(callers) : "memory");
  return block;
}

static size_t n_x = 16, n_y = 16;

__attribute__((noinline)) void* via_x(void) {
  volatile char pad[1024];
  pad[0] = 1;
  void* block = moving(n_x, 1000);
  __asm__ volatile("" : : "r"(pad) : "memory");
  return block;
}

__attribute__((noinline)) void* via_y(void) {
  volatile char pad[32];
  pad[0] = 1;
  void* block = moving(n_y, 2000);
  __asm__ volatile("" : : "r"(pad) : "memory");
  return block;
}

static void* (*volatile paths[2])(void) = {via_x, via_y};

/* A few levels of callers, so that the backtrace holds more of the stack's return addresses. */
__attribute__((noinline)) void* level0(int path) { return paths[path](); }
#define LEVEL(name, next)                           \
  __attribute__((noinline)) void* name(int path) {  \
    void* block = next(path);                       \
    __asm__ volatile("" : : "r"(block) : "memory"); \
    return block;                                   \
  }
LEVEL(level1, level0)
LEVEL(level2, level1)
LEVEL(level3, level2)
LEVEL(level4, level3)
LEVEL(level5, level4)

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: moved_frame ROUNDS\n");
    return 2;
  }
  const int rounds = atoi(argv[1]);
  /* Size the alloca on via_y's path so that inner runs where it runs on via_x's. */
  free(level5(0));
  uintptr_t at_x = buffer_address;
  free(level5(1));
  uintptr_t at_y = buffer_address;
  if (at_y < at_x) {
    fprintf(stderr, "moved_frame: via_y's frame is larger than via_x's\n");
    return 1;
  }
  n_y = n_x + (at_y - at_x);
  free(level5(0));
  at_x = buffer_address;
  free(level5(1));
  at_y = buffer_address;
  if (at_x != at_y) {
    fprintf(stderr, "moved_frame: could not bring the two paths to the same stack pointer\n");
    return 1;
  }
  for (int i = 0; i < rounds; ++i) sink = level5(i % 2);
  sink = NULL;
  return 0;
}
