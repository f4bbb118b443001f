// What dlsym and dlvsym answer for the symbols heapkeeper interposes (the entry points are in
// symbol_lookup_entry.S).
//
// A program that asks a library's handle for an allocation function — ctypes.CDLL("libc.so.6")
// .free, dlsym(dlopen("libc.so.6"), "malloc"), or dlsym(RTLD_NEXT, "malloc") from a library
// loaded after heapkeeper — would get glibc's own function, which then meets heapkeeper's blocks
// (glibc aborts: "munmap_chunk(): invalid pointer") and allocates blocks heapkeeper never sees.
// So for every interposed name the answer is heapkeeper's own function whenever glibc's lookup
// would have found a definition in heapkeeper or in an object listed after it (libc, libstdc++, a
// dlopened jemalloc). A definition listed before heapkeeper — the program's own, or an earlier
// preload that wraps malloc — is left as glibc finds it, and so is every lookup that fails or
// names anything else: those go to the original with the caller's return address intact, so
// RTLD_NEXT, RTLD_DEFAULT scopes and dlerror behave exactly as without heapkeeper.
#include <dlfcn.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "allocator/loaded_objects.h"
#include "allocator/stack_capture.h"
#include "preload/hooked_functions.h"
#include "preload/original_functions.h"

#if defined(__x86_64__)

namespace {

using DlsymFunction = void* (*)(void*, const char*);
using DlvsymFunction = void* (*)(void*, const char*, const char*);

// Only reached if no object after heapkeeper defines dlsym, which glibc always does.
void* no_dlsym(void*, const char*) { return nullptr; }
void* no_dlvsym(void*, const char*, const char*) { return nullptr; }

}  // namespace

// The originals, read by the entry points' jump. Set before the first forward (by the routing
// below, which every call goes through first), and only ever to the same values.
extern "C" {
__attribute__((visibility("hidden"))) void* heapkeeper_real_dlsym = reinterpret_cast<void*>(&no_dlsym);
__attribute__((visibility("hidden"))) void* heapkeeper_real_dlvsym = reinterpret_cast<void*>(&no_dlvsym);
}

namespace heapkeeper::preload {
namespace {

constexpr const char* kInterposedNames[] = {
#define HEAPKEEPER_NAME(name) #name,
    HEAPKEEPER_INTERPOSED_SYMBOLS(HEAPKEEPER_NAME) HEAPKEEPER_SYMBOL_LOOKUP_FUNCTIONS(HEAPKEEPER_NAME)
#undef HEAPKEEPER_NAME
};
constexpr size_t kInterposedCount = sizeof(kInterposedNames) / sizeof(kInterposedNames[0]);
std::atomic<void*> g_own[kInterposedCount];
std::atomic<bool> g_originals_found{false};

void find_originals() {
  if (g_originals_found.load(std::memory_order_acquire)) return;
  // glibc 2.34 and later define both in libc.so.6, earlier ones in libdl.so.2.
  if (void* f = alloc::next_definition("dlsym")) __atomic_store_n(&heapkeeper_real_dlsym, f, __ATOMIC_RELEASE);
  if (void* f = alloc::next_definition("dlvsym")) __atomic_store_n(&heapkeeper_real_dlvsym, f, __ATOMIC_RELEASE);
  g_originals_found.store(true, std::memory_order_release);
}

// heapkeeper's own definition of `name` if it is one of the interposed symbols, else nullptr.
void* interposed_definition(const char* name) {
  for (size_t i = 0; i < kInterposedCount; ++i) {
    if (name[0] != kInterposedNames[i][0] || std::strcmp(name, kInterposedNames[i]) != 0) continue;
    void* own = g_own[i].load(std::memory_order_relaxed);
    if (own == nullptr) {
      own = alloc::own_definition(name);
      g_own[i].store(own, std::memory_order_relaxed);
    }
    return own;
  }
  return nullptr;
}

void* original_lookup(void* handle, const char* name, const char* version) {
  if (version != nullptr) {
    auto original = reinterpret_cast<DlvsymFunction>(__atomic_load_n(&heapkeeper_real_dlvsym, __ATOMIC_ACQUIRE));
    return original(handle, name, version);
  }
  auto original = reinterpret_cast<DlsymFunction>(__atomic_load_n(&heapkeeper_real_dlsym, __ATOMIC_ACQUIRE));
  return original(handle, name);
}

}  // namespace

void* unrouted_dlsym(void* handle, const char* name) noexcept {
  find_originals();
  return original_lookup(handle, name, nullptr);
}

}  // namespace heapkeeper::preload

// Called by the entry points with their arguments and their return address (`caller`); `version`
// is nullptr for dlsym. Returns the answer, or nullptr to have the entry point forward the call
// to the original unchanged.
extern "C" __attribute__((visibility("hidden"))) void* heapkeeper_route_symbol_lookup(void* handle, const char* name,
                                                                                      const char* version,
                                                                                      void* caller) noexcept {
  namespace preload = heapkeeper::preload;
  preload::find_originals();
  if (name == nullptr) return nullptr;
  heapkeeper::alloc::prepare_unwinder_for_lookup(name);
  void* own = preload::interposed_definition(name);
  if (own == nullptr) return nullptr;
  if (handle == RTLD_NEXT) {
    // From the program or an earlier preload, "next" already reaches heapkeeper (or a wrapper in
    // between), and heapkeeper's own start-up must reach the originals: forward those. From an
    // object after heapkeeper it would find libc's. The lookup below only keeps dlerror as a
    // successful dlsym leaves it (cleared), or fails as the original would on a bad version.
    if (heapkeeper::alloc::position_of(reinterpret_cast<uintptr_t>(caller)) !=
        heapkeeper::alloc::ObjectPosition::kAfter)
      return nullptr;
    return preload::original_lookup(RTLD_DEFAULT, name, version) != nullptr ? own : nullptr;
  }
  void* found = preload::original_lookup(handle, name, version);
  if (found == nullptr) return nullptr;  // the original fails the same way, and sets dlerror's text
  return heapkeeper::alloc::position_of(reinterpret_cast<uintptr_t>(found)) ==
                 heapkeeper::alloc::ObjectPosition::kBefore
             ? found
             : own;
}

#else

namespace heapkeeper::preload {
void* unrouted_dlsym(void* handle, const char* name) noexcept { return dlsym(handle, name); }
}  // namespace heapkeeper::preload

#endif
