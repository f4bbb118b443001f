/* A shared library loaded with dlopen by dlopen_alloc.c. It allocates and frees from its own code
 * (so heapkeeper records stacks inside a module that is later unloaded) and keeps some blocks
 * alive across calls, released by plugin_shutdown(). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLUGIN_EXPORT __attribute__((visibility("default")))

static char** kept;
static size_t kept_count;

PLUGIN_EXPORT uint64_t plugin_work(int rounds) {
  uint64_t sum = 0;
  for (int r = 0; r < rounds; ++r) {
    size_t size = 16 + (size_t)(r * 37) % 2000;
    char* block = malloc(size);
    if (block == NULL) abort();
    snprintf(block, size, "plugin block %d of %zu bytes", r, size);
    sum += strlen(block) + size;
    if (r % 100 == 0) {
      char** grown = realloc(kept, (kept_count + 1) * sizeof *kept);
      if (grown == NULL) abort();
      kept = grown;
      kept[kept_count++] = block;
    } else {
      free(block);
    }
  }
  return sum;
}

PLUGIN_EXPORT size_t plugin_shutdown(void) {
  size_t released = kept_count;
  for (size_t i = 0; i < kept_count; ++i) free(kept[i]);
  free(kept);
  kept = NULL;
  kept_count = 0;
  return released;
}
