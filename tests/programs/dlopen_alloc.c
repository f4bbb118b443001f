/* Loads a plugin (tests/programs/plugin.c) with dlopen, lets it allocate, and unloads it; several
 * times, so blocks allocated and stacks recorded inside an unloaded module are handled.
 *
 * Usage: dlopen_alloc PLUGIN.so [CYCLES]
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef uint64_t (*work_function)(int);
typedef size_t (*shutdown_function)(void);

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: dlopen_alloc PLUGIN.so [CYCLES]\n");
    return 2;
  }
  const int cycles = argc > 2 ? atoi(argv[2]) : 5;
  uint64_t total = 0;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    void* plugin = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (plugin == NULL) {
      fprintf(stderr, "dlopen: %s\n", dlerror());
      return 3;
    }
    work_function work = (work_function)dlsym(plugin, "plugin_work");
    shutdown_function shutdown = (shutdown_function)dlsym(plugin, "plugin_shutdown");
    if (work == NULL || shutdown == NULL) {
      fprintf(stderr, "dlsym: %s\n", dlerror());
      return 3;
    }
    uint64_t sum = work(2000 + cycle * 100);
    size_t released = shutdown();
    printf("cycle %d: work %llu, released %zu kept blocks\n", cycle, (unsigned long long)sum, released);
    total += sum;
    if (dlclose(plugin) != 0) {
      fprintf(stderr, "dlclose: %s\n", dlerror());
      return 3;
    }
  }
  printf("total %llu after %d cycles\n", (unsigned long long)total, cycles);
  return 0;
}
