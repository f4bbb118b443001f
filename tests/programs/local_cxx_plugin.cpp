// A C++ plugin for a C program (local_plugin_host.c), loaded with RTLD_LOCAL: its C++ runtime is
// then outside the global scope. It installs a new-handler that counts its calls and gives up,
// asks for an impossible block, and catches std::bad_alloc: heapkeeper must find the plugin's
// runtime for both (allocator/program_cxx_runtime.h).
#include <cstdint>
#include <cstdio>
#include <new>

namespace {
int g_handler_calls = 0;
void counting_handler() {
  ++g_handler_calls;
  std::set_new_handler(nullptr);
}
}  // namespace

extern "C" __attribute__((visibility("default"))) int plugin_run(void) {
  std::set_new_handler(counting_handler);
  volatile size_t huge = SIZE_MAX / 4;
  try {
    char* never = new char[huge];
    std::printf("allocated %p\n", static_cast<void*>(never));
  } catch (const std::bad_alloc&) {
    std::printf("plugin caught bad_alloc after %d new-handler call(s)\n", g_handler_calls);
  }
  return g_handler_calls;
}
