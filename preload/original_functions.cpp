// Looking up the originals of forwarded functions, and checking that interposition took effect.
#include "preload/original_functions.h"

#include <dlfcn.h>

#include <atomic>

#include "allocator/engine.h"

namespace heapkeeper::preload {

#define HEAPKEEPER_DEFINE_ORIGINAL(name, return_type, parameters)                              \
  name##_function original_##name() {                                                          \
    static std::atomic<name##_function> cached{nullptr};                                       \
    name##_function function = cached.load(std::memory_order_acquire);                         \
    if (function == nullptr) {                                                                  \
      function = reinterpret_cast<name##_function>(alloc::lookup_next_symbol(#name));           \
      cached.store(function, std::memory_order_release);                                       \
    }                                                                                          \
    return function;                                                                           \
  }
HEAPKEEPER_FORWARDED_FUNCTIONS(HEAPKEEPER_DEFINE_ORIGINAL)
#undef HEAPKEEPER_DEFINE_ORIGINAL

namespace {

// A non-PIE executable that calls malloc has a canonical PLT entry named "malloc", and dlsym finds
// that first; it still jumps to whatever the dynamic linker bound, so it counts as routed here.
bool is_main_program(const void* base) {
  Dl_info main_info;
  void* main_symbol = dlsym(RTLD_DEFAULT, "main");
  return main_symbol != nullptr && dladdr(main_symbol, &main_info) != 0 && main_info.dli_fbase == base;
}

}  // namespace

void check_interposition() {
  Dl_info self;
  if (dladdr(reinterpret_cast<void*>(&check_interposition), &self) == 0) return;
  const char* missing[64];
  int count = 0;
#define HEAPKEEPER_CHECK_SYMBOL(name)                                                  \
  {                                                                                    \
    Dl_info where;                                                                     \
    void* address = dlsym(RTLD_DEFAULT, #name);                                        \
    if (address == nullptr || dladdr(address, &where) == 0 ||                          \
        (where.dli_fbase != self.dli_fbase && !is_main_program(where.dli_fbase))) {       \
      if (count < 64) missing[count++] = #name;                                        \
    }                                                                                  \
  }
  HEAPKEEPER_INTERPOSED_SYMBOLS(HEAPKEEPER_CHECK_SYMBOL)
#undef HEAPKEEPER_CHECK_SYMBOL
  if (count > 0) alloc::warn_not_interposed(missing, count);
}

}  // namespace heapkeeper::preload
