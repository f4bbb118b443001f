// The exported dlclose: forwards to allocator/unloaded_modules.h with the original, which records
// what the call unmaps (path, build-id, load address) so that stacks recorded inside a closed
// library are still named. Same result, errno and dlerror state as the original.
#include <dlfcn.h>

#include "allocator/unloaded_modules.h"
#include "preload/original_functions.h"

#define HK_EXPORT extern "C" __attribute__((visibility("default")))

HK_EXPORT int dlclose(void* handle) noexcept {
  auto original = heapkeeper::preload::original_dlclose();
  // glibc always has one; without it there is nothing to close.
  if (original == nullptr) return -1;
  return heapkeeper::alloc::dlclose_recording_unloads(original, handle);
}
