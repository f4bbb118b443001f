/* Built without unwind tables or debug information (whose .debug_frame libunwind would use;
 * tests/programs/CMakeLists.txt): libunwind steps through these
 * frames by their frame pointers, validating each address it reads with its pipe. */
#include <stdlib.h>

__attribute__((noinline)) static void* inner(size_t size) {
  void* block = malloc(size);
  __asm__ volatile("" ::: "memory");
  return block;
}

__attribute__((noinline)) void* allocate_without_unwind_info(size_t size) {
  void* block = inner(size);
  __asm__ volatile("" ::: "memory");
  return block;
}

/* Calls `function` from a frame without unwind information: its own unwind steps through it. */
__attribute__((noinline)) void call_without_unwind_info(void (*function)(void)) {
  function();
  __asm__ volatile("" ::: "memory");
}
