/* Allocation stacks through frames of varying size, for tests/integration/stack_attribution.sh.
 *
 * One thread recurses through three functions, f0, f1 and f2, each with an alloca whose size
 * depends on the level and the pattern, to a depth of 1 to 30 levels chosen by one of 400 random
 * patterns; the innermost level allocates through alloc_site. Half the blocks are leaked. The
 * same call sites are reached at the same stack depth under different callers, with frames that
 * moved, and uninitialised alloca buffers hold the return addresses of earlier calls: what a
 * stack cache must not mistake for the current stack (allocator/stack_capture.cpp).
 *
 * With "longjmp", every third innermost call leaves by longjmp to main instead of returning, and
 * main then allocates one block itself: frames are abandoned rather than popped, so the slots a
 * cache remembered are left as they were, below a stack that is now much shallower.
 *
 * Usage: varying_frames SEED EXPECTED_FILE [longjmp]
 * Writes one line per pattern that leaked, "COUNT f0f2f1...", outermost level first, and with
 * longjmp "COUNT -" for main's own blocks; the report's leak groups must have exactly those counts
 * per sequence of f0/f1/f2 frames.
 */
#include <alloca.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { kPatterns = 400, kMaxLevels = 30, kCalls = 3000 };

static int pattern_depth[kPatterns];
static unsigned char pattern_function[kPatterns][kMaxLevels];
static int leaked_per_pattern[kPatterns];
static void* leaked[kCalls];
static int leaked_count;
static int call;
static int jump_out;
static jmp_buf jump_target;
static int leaked_in_main;

__attribute__((noinline)) void* alloc_site(size_t bytes) {
  void* block = malloc(bytes);
  __asm__ volatile("" : : "r"(block) : "memory");
  return block;
}

void descend(int pattern, int level);

#define LEVEL_FUNCTION(name)                                         \
  __attribute__((noinline)) void name(int pattern, int level) {      \
    char* buffer = alloca((size_t)(level * 37 + pattern) % 200 + 1); \
    buffer[0] = 1;                                                   \
    __asm__ volatile("" : : "r"(buffer) : "memory");                 \
    descend(pattern, level + 1);                                     \
    __asm__ volatile("" : : "r"(buffer) : "memory");                 \
  }
LEVEL_FUNCTION(f0)
LEVEL_FUNCTION(f1)
LEVEL_FUNCTION(f2)

__attribute__((noinline)) void descend(int pattern, int level) {
  if (level == pattern_depth[pattern]) {
    void* block = alloc_site(24 + (size_t)(pattern % 8));
    if (call % 2 == 0) {
      leaked[leaked_count++] = block;
      ++leaked_per_pattern[pattern];
    } else {
      free(block);
    }
    if (jump_out && call % 3 == 0) longjmp(jump_target, 1);
    return;
  }
  switch (pattern_function[pattern][level]) {
    case 0:
      f0(pattern, level);
      break;
    case 1:
      f1(pattern, level);
      break;
    default:
      f2(pattern, level);
      break;
  }
}

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "longjmp") != 0)) {
    fprintf(stderr, "usage: varying_frames SEED EXPECTED_FILE [longjmp]\n");
    return 2;
  }
  jump_out = argc == 4;
  srand((unsigned)atoi(argv[1]));
  for (int p = 0; p < kPatterns; ++p) {
    pattern_depth[p] = 1 + rand() % kMaxLevels;
    for (int level = 0; level < kMaxLevels; ++level) pattern_function[p][level] = (unsigned char)(rand() % 3);
  }
  for (call = 0; call < kCalls; ++call) {
    const int pattern = rand() % kPatterns;
    if (setjmp(jump_target) == 0) {
      descend(pattern, 0);
    } else {
      leaked[leaked_count++] = alloc_site(1000);
      ++leaked_in_main;
    }
  }
  FILE* expected = fopen(argv[2], "w");
  if (expected == NULL) {
    perror(argv[2]);
    return 1;
  }
  for (int p = 0; p < kPatterns; ++p) {
    if (leaked_per_pattern[p] == 0) continue;
    fprintf(expected, "%d ", leaked_per_pattern[p]);
    for (int level = 0; level < pattern_depth[p]; ++level) fprintf(expected, "f%d", pattern_function[p][level]);
    fputc('\n', expected);
  }
  if (leaked_in_main > 0) fprintf(expected, "%d -\n", leaked_in_main);
  fclose(expected);
  /* Lose every pointer: complemented, they point nowhere near the blocks. */
  for (int i = 0; i < leaked_count; ++i) leaked[i] = (void*)~(unsigned long)leaked[i];
  return 0;
}
