/* A plugin that unloaded_library.c loads, allocates from, and closes with dlclose: blocks it loses
 * (leaks) and blocks the program keeps (live) carry stacks through code that is no longer mapped
 * when heapkeeper reports.
 *
 * Built twice, as libhk_unloaded_alpha.so and libhk_unloaded_bravo.so, with PLUGIN_NAME alpha and
 * bravo: the names have the same length, so both libraries have the same layout, and bravo, loaded
 * after alpha is closed, lands on alpha's addresses with every allocation call at the same offset.
 * Only the names (and so the build-ids) differ. Built at -O0 with frame pointers so that each
 * function is its own frame. */
#include <stdlib.h>
#include <string.h>

#define PLUGIN_EXPORT __attribute__((visibility("default")))
#define PLUGIN_GLUE2(prefix, name) prefix##_##name
#define PLUGIN_GLUE(prefix, name) PLUGIN_GLUE2(prefix, name)
#define PLUGIN_FUNCTION(name) PLUGIN_GLUE(PLUGIN_NAME, name)

/* Every block of this plugin is made here: the top frame of each of its stacks. */
PLUGIN_EXPORT __attribute__((noinline)) void* PLUGIN_FUNCTION(make_block)(size_t size) {
  void* block = malloc(size);
  if (block == NULL) abort();
  memset(block, 0x5a, size); /* no byte pattern that could pass for a pointer */
  return block;
}

/* `count` blocks whose pointers are dropped here: leaked as soon as this returns. */
PLUGIN_EXPORT __attribute__((noinline)) void PLUGIN_FUNCTION(lose_blocks)(int count, size_t size) {
  for (int i = 0; i < count; ++i) (void)PLUGIN_FUNCTION(make_block)(size);
}

/* `count` blocks handed to the program, which keeps them in a global: live and reachable. */
PLUGIN_EXPORT __attribute__((noinline)) void PLUGIN_FUNCTION(keep_blocks)(void** slots, int count, size_t size) {
  for (int i = 0; i < count; ++i) slots[i] = PLUGIN_FUNCTION(make_block)(size);
}
