/* leak_through_dlsym: blocks from allocation functions the program looked up itself — on libc's
 * own handle with dlsym (111 bytes from malloc, 222 from calloc, 333 from realloc) and dlvsym
 * (444 from malloc@GLIBC_2.2.5), and with dlsym(RTLD_DEFAULT) (555) — then lost. Each must be
 * heapkeeper's block, tracked and attributed to the function that called it.
 *
 * corpus: expect direct=5 indirect=0 bytes=1665
 * corpus: direct-leak-in lose_through_libc_handle
 * corpus: direct-leak-in lose_through_default_scope
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "corpus.h"

typedef void* (*malloc_function)(size_t);
typedef void* (*calloc_function)(size_t, size_t);
typedef void* (*realloc_function)(void*, size_t);

static CORPUS_NOINLINE void lose_through_libc_handle(void* libc) {
  malloc_function libc_malloc = (malloc_function)dlsym(libc, "malloc");
  calloc_function libc_calloc = (calloc_function)dlsym(libc, "calloc");
  realloc_function libc_realloc = (realloc_function)dlsym(libc, "realloc");
  malloc_function versioned_malloc = (malloc_function)dlvsym(libc, "malloc", "GLIBC_2.2.5");
  if (libc_malloc == NULL || libc_calloc == NULL || libc_realloc == NULL || versioned_malloc == NULL) exit(3);
  char* volatile block = libc_malloc(111);
  corpus_fill(block, 111);
  block = libc_calloc(1, 222);
  block = libc_realloc(malloc(10), 333);
  corpus_fill(block, 333);
  block = versioned_malloc(444);
  corpus_fill(block, 444);
  block = NULL;
}

static CORPUS_NOINLINE void lose_through_default_scope(void) {
  malloc_function default_malloc = (malloc_function)dlsym(RTLD_DEFAULT, "malloc");
  char* volatile block = default_malloc(555);
  corpus_fill(block, 555);
  block = NULL;
}

int main(void) {
  void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  if (libc == NULL) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 3;
  }
  lose_through_libc_handle(libc);
  lose_through_default_scope();
  corpus_clobber_stack();
  return 0;
}
