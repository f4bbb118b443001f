// A preloadable module that leaks one 4242-byte block from its constructor, so that a real
// program which has no leak of its own (sort, tar) ends with one, and its exit report has something
// to say. Loaded after libheapkeeper.so: LD_PRELOAD=libheapkeeper.so:hk_prog_leak_at_start.so.
#include <stdlib.h>
#include <string.h>

void* volatile hk_leak_at_start_holder;

__attribute__((noinline)) static void leak_one_block(void) {
  hk_leak_at_start_holder = malloc(4242);
  if (hk_leak_at_start_holder != NULL) memset(hk_leak_at_start_holder, 0x5a, 4242);
}

// Overwrites the stack below the constructor's frame, where malloc's frames left copies of the
// pointer, so that only the global held it: once cleared, nothing does.
__attribute__((noinline)) static void scrub_stack(void) {
  char scratch[16384];
  memset(scratch, 0, sizeof(scratch));
  __asm__ volatile("" : : "r"(scratch) : "memory"); /* or the compiler drops the memset and the call */
}

__attribute__((constructor)) static void hk_leak_at_start(void) {
  leak_one_block();
  scrub_stack();
  hk_leak_at_start_holder = NULL;
}
