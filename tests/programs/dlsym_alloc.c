/* Allocation functions reached through dlsym and dlvsym, mixed with the program's plain calls, and
 * lookups that must behave exactly as without heapkeeper.
 *
 * The program looks malloc, free, calloc, realloc, posix_memalign and malloc_usable_size up on
 * libc's own handle, malloc with dlvsym and with dlsym(RTLD_NEXT) from itself, and has a plugin
 * (dlsym_plugin.c, loaded RTLD_LOCAL) look malloc and free up with RTLD_NEXT from there; blocks
 * from each are freed by the others and by plain free. Then it prints what lookups of other names
 * return — strlen on libc's handle, a missing symbol (and dlerror's text), RTLD_NEXT and
 * RTLD_DEFAULT from inside the plugin, whose answers depend on who calls — for the integration
 * test to compare with a plain run. Under glibc's own functions a heapkeeper block meeting
 * glibc's free aborts the program.
 *
 * Usage: dlsym_alloc PLUGIN.so
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void* (*malloc_function)(size_t);
typedef void (*free_function)(void*);
typedef void* (*calloc_function)(size_t, size_t);
typedef void* (*realloc_function)(void*, size_t);
typedef int (*posix_memalign_function)(void**, size_t, size_t);
typedef size_t (*usable_size_function)(void*);
typedef size_t (*strlen_function)(const char*);
typedef void* (*lookup_function)(const char*);
typedef const char* (*describe_function)(void);

static void* must(void* symbol, const char* what) {
  if (symbol == NULL) {
    fprintf(stderr, "lookup of %s failed: %s\n", what, dlerror());
    exit(3);
  }
  return symbol;
}

static void print_lookup(const char* what, void* symbol) {
  const char* error = dlerror();
  printf("%s: %s, dlerror %s\n", what, symbol != NULL ? "found" : "null", error != NULL ? error : "(none)");
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: dlsym_alloc PLUGIN.so\n");
    return 2;
  }
  void* libc = must(dlopen("libc.so.6", RTLD_NOW), "libc.so.6");
  malloc_function libc_malloc = (malloc_function)must(dlsym(libc, "malloc"), "malloc");
  free_function libc_free = (free_function)must(dlsym(libc, "free"), "free");
  calloc_function libc_calloc = (calloc_function)must(dlsym(libc, "calloc"), "calloc");
  realloc_function libc_realloc = (realloc_function)must(dlsym(libc, "realloc"), "realloc");
  posix_memalign_function libc_posix_memalign =
      (posix_memalign_function)must(dlsym(libc, "posix_memalign"), "posix_memalign");
  usable_size_function libc_usable_size = (usable_size_function)must(dlsym(libc, "malloc_usable_size"), "usable");
  malloc_function versioned_malloc = (malloc_function)must(dlvsym(libc, "malloc", "GLIBC_2.2.5"), "malloc@GLIBC_2.2.5");
  free_function versioned_free = (free_function)must(dlvsym(RTLD_DEFAULT, "free", "GLIBC_2.2.5"), "free@GLIBC_2.2.5");
  malloc_function next_malloc = (malloc_function)must(dlsym(RTLD_NEXT, "malloc"), "RTLD_NEXT malloc");

  void* plugin = must(dlopen(argv[1], RTLD_NOW | RTLD_LOCAL), argv[1]);
  lookup_function plugin_lookup_next = (lookup_function)must(dlsym(plugin, "plugin_lookup_next"), "plugin_lookup_next");
  lookup_function plugin_lookup_default =
      (lookup_function)must(dlsym(plugin, "plugin_lookup_default"), "plugin_lookup_default");
  malloc_function plugin_malloc = (malloc_function)must(plugin_lookup_next("malloc"), "the plugin's RTLD_NEXT malloc");
  free_function plugin_free = (free_function)must(plugin_lookup_next("free"), "the plugin's RTLD_NEXT free");

  // Every way of allocating, each block freed another way, many times over.
  unsigned long checksum = 0;
  for (int round = 0; round < 2000; ++round) {
    const size_t size = 16 + (size_t)(round % 97) * 24;
    char* a = libc_malloc(size);
    char* b = malloc(size);
    char* c = libc_calloc(round % 7 + 1, size);
    char* d = versioned_malloc(size);
    char* e = next_malloc(size);
    char* f = plugin_malloc(size);
    void* g = NULL;
    if (a == NULL || b == NULL || c == NULL || d == NULL || e == NULL || f == NULL ||
        libc_posix_memalign(&g, 64, size) != 0 || ((size_t)g & 63) != 0) {
      fprintf(stderr, "allocation failed in round %d\n", round);
      return 1;
    }
    for (size_t i = 0; i < size; ++i) checksum += (unsigned char)c[i];  // calloc'd: all zero
    memset(a, 'a', size);
    memset(g, 'g', size);
    if (libc_usable_size(a) < size || malloc_usable_size(f) < size) {
      fprintf(stderr, "usable size below the request in round %d\n", round);
      return 1;
    }
    a = libc_realloc(a, size * 3);
    b = realloc(b, size / 2 + 1);
    checksum += (unsigned char)a[size - 1];
    free(a);
    libc_free(b);
    plugin_free(c);
    libc_free(d);
    versioned_free(e);
    free(f);
    libc_free(g);
  }
  printf("mixed allocation: checksum %lu\n", checksum);

  // Other names: exactly what glibc answers.
  strlen_function libc_strlen = (strlen_function)dlsym(libc, "strlen");
  printf("strlen on libc's handle: %zu\n", libc_strlen != NULL ? libc_strlen("heapkeeper") : 0);
  print_lookup("missing symbol on libc's handle", dlsym(libc, "heapkeeper_no_such_symbol"));
  print_lookup("malloc after a failed lookup", dlsym(libc, "malloc"));
  print_lookup("missing version", dlvsym(libc, "malloc", "GLIBC_0.0"));
  print_lookup("mallocx on libc's handle", dlsym(libc, "mallocx"));
  print_lookup("RTLD_NEXT from the program for a missing symbol", dlsym(RTLD_NEXT, "heapkeeper_no_such_symbol"));
  // The plugin defines plugin_marker and is loaded RTLD_LOCAL: RTLD_NEXT from it skips it, and
  // RTLD_DEFAULT from it finds it (its own scope) while from anywhere else it does not.
  print_lookup("RTLD_NEXT plugin_marker from the plugin", plugin_lookup_next("plugin_marker"));
  print_lookup("RTLD_DEFAULT plugin_marker from the plugin", plugin_lookup_default("plugin_marker"));
  print_lookup("RTLD_DEFAULT plugin_marker from the program", dlsym(RTLD_DEFAULT, "plugin_marker"));
  print_lookup("RTLD_NEXT strlen from the plugin", plugin_lookup_next("strlen"));
  dlclose(plugin);
  dlclose(libc);
  return 0;
}
