/* Deliberately bad frees, for heapkeeper's bad-free reports.
 *
 * Usage: bad_free MODE [SIZE], where MODE is
 *   double      free the same block twice
 *   double-aligned  free a 128-byte block from aligned_alloc(SIZE, 128) twice (SIZE: 32, 64, 256...)
 *   invalid     free a pointer 8 bytes into a live block
 *   stack       free the address of a local variable
 *   foreign-ok  the control: allocate and free correctly
 * SIZE (double and invalid; default 48 and 64) is the block's size: 4096 or 1048576 make a block
 * whose header heapkeeper keeps out of band (the program then prints one more line first). The program prints a line
 * (flushed) before the bad call, and "bad_free: finished MODE" at the end, which is reached only if the bad free is
 * ignored (HEAPKEEPER_ON_BAD_FREE=continue). It is built with -O0 -g so that the helpers below appear as frames in the
 * reports; free is called through a volatile pointer so the compiler neither warns about nor removes the bad call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void (*volatile release)(void*) = free;

__attribute__((noinline)) static char* make_block_for_bad_free(size_t size) {
  char* block = malloc(size);
  if (block == NULL) abort();
  memset(block, 'x', size);
  return block;
}

__attribute__((noinline)) static char* make_aligned_block_for_bad_free(size_t alignment) {
  char* block = aligned_alloc(alignment, 128);
  if (block == NULL) abort();
  memset(block, 'a', 128);
  return block;
}

__attribute__((noinline)) static void first_free_of_block(char* block) { release(block); }

__attribute__((noinline)) static void double_free_block(char* block) { release(block); }

__attribute__((noinline)) static void invalid_free_inside_block(char* block) { release(block + 8); }

__attribute__((noinline)) static void free_stack_address(void) {
  char on_stack[64];
  memset(on_stack, 's', sizeof on_stack);
  release(on_stack);
  printf("stack buffer starts with %c\n", on_stack[0]);
}

static void announce(const char* what) {
  printf("bad_free: about to %s\n", what);
  fflush(stdout);
}

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    fprintf(stderr, "usage: bad_free double|double-aligned|invalid|stack|foreign-ok [SIZE]\n");
    return 2;
  }
  const char* mode = argv[1];
  const size_t size = argc == 3 ? strtoul(argv[2], NULL, 10) : 0;
  /* stdout's buffer (4096 bytes) is allocated at its first use: before the block is, or it could
   * take the freed block's memory, making the second free a free of the buffer. */
  if (size != 0) announce("allocate a block of the given size");
  if (strcmp(mode, "double") == 0) {
    char* block = make_block_for_bad_free(size != 0 ? size : 48);
    first_free_of_block(block);
    announce("free a block twice");
    double_free_block(block);
  } else if (strcmp(mode, "double-aligned") == 0) {
    char* block = make_aligned_block_for_bad_free(size != 0 ? size : 64);
    first_free_of_block(block);
    announce("free an aligned block twice");
    double_free_block(block);
  } else if (strcmp(mode, "invalid") == 0) {
    char* block = make_block_for_bad_free(size != 0 ? size : 64);
    announce("free a pointer into a live block");
    invalid_free_inside_block(block);
    release(block);
  } else if (strcmp(mode, "stack") == 0) {
    announce("free a stack address");
    free_stack_address();
  } else if (strcmp(mode, "foreign-ok") == 0) {
    char* block = make_block_for_bad_free(64);
    char* copy = strdup("control");
    announce("free correctly");
    first_free_of_block(block);
    release(copy);
  } else {
    fprintf(stderr, "bad_free: unknown mode %s\n", mode);
    return 2;
  }
  printf("bad_free: finished %s\n", mode);
  return 0;
}
