/* count_unwinds: a library preloaded ahead of libheapkeeper.so that counts the unwinds heapkeeper
 * asks libunwind for (unw_backtrace, and the stepped unwinds' _ULx86_64_init_local) and its set-ups
 * of libunwind (_ULx86_64_set_caching_policy), and prints "unwinds: N" and "unwinder set-ups: N" on
 * stderr at exit, for integration/stack_cache_reach.sh: a stack the cache holds is captured
 * without an unwind, and a process that captures none never sets libunwind up. Each call is
 * forwarded to libunwind's own. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

static atomic_ulong g_unwinds;
static atomic_ulong g_setups;

// Exported whatever the build's default visibility: they must take libunwind's place.
#define EXPORT __attribute__((visibility("default")))

EXPORT int unw_backtrace(void** buffer, int size) {
  static int (*next)(void**, int);
  if (next == NULL) next = (int (*)(void**, int))dlsym(RTLD_NEXT, "unw_backtrace");
  atomic_fetch_add(&g_unwinds, 1);
  return next != NULL ? next(buffer, size) : 0;
}

EXPORT int _ULx86_64_init_local(void* cursor, void* context) {
  static int (*next)(void*, void*);
  if (next == NULL) next = (int (*)(void*, void*))dlsym(RTLD_NEXT, "_ULx86_64_init_local");
  atomic_fetch_add(&g_unwinds, 1);
  return next != NULL ? next(cursor, context) : -1;
}

EXPORT int _ULx86_64_set_caching_policy(void* address_space, int policy) {
  static int (*next)(void*, int);
  if (next == NULL) next = (int (*)(void*, int))dlsym(RTLD_NEXT, "_ULx86_64_set_caching_policy");
  atomic_fetch_add(&g_setups, 1);
  return next != NULL ? next(address_space, policy) : -1;
}

__attribute__((destructor)) static void report_unwinds(void) {
  char line[96];
  const int length = snprintf(line, sizeof line, "unwinds: %lu\nunwinder set-ups: %lu\n",
                              (unsigned long)atomic_load(&g_unwinds), (unsigned long)atomic_load(&g_setups));
  if (length > 0 && write(2, line, (size_t)length) < 0) {
    /* nothing to do: stderr is gone */
  }
}
