// A preloadable module that defines malloc_usable_size itself. Loaded before libheapkeeper.so
// (LD_PRELOAD=hk_prog_first_definition.so:libheapkeeper.so), it takes the symbol first, and
// heapkeeper must say at start-up that malloc_usable_size is not routed to it.
#include <stddef.h>

__attribute__((visibility("default"))) size_t malloc_usable_size(void* pointer) {
  (void)pointer;
  return 0;
}
