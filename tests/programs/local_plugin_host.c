/* A C program that loads a C++ plugin with RTLD_LOCAL and runs it (local_cxx_plugin.cpp).
 * Usage: local_plugin_host PLUGIN */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  void* plugin = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (plugin == NULL) {
    printf("%s\n", dlerror());
    return 1;
  }
  int (*run)(void) = (int (*)(void))dlsym(plugin, "plugin_run");
  const int calls = run();
  printf("host: the plugin's new-handler ran %d time(s)\n", calls);
  dlclose(plugin);
  return 0;
}
