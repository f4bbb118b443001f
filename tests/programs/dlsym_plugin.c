/* The plugin dlsym_alloc loads: lookups made from inside a library loaded after heapkeeper, where
 * RTLD_NEXT and RTLD_DEFAULT answer relative to this object, not to the program or heapkeeper. */
#define _GNU_SOURCE
#include <dlfcn.h>

__attribute__((visibility("default"))) int plugin_marker = 42;

__attribute__((visibility("default"))) void* plugin_lookup_next(const char* name) { return dlsym(RTLD_NEXT, name); }

__attribute__((visibility("default"))) void* plugin_lookup_default(const char* name) {
  return dlsym(RTLD_DEFAULT, name);
}
