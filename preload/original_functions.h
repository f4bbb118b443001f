// The table of original functions heapkeeper forwards to (generated from hooked_functions.h).
#pragma once

#include <aio.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <time.h>

#include <atomic>

#include "allocator/engine.h"

#include "preload/hooked_functions.h"

namespace heapkeeper::preload {

// The definition of `name` that follows this library's (what dlsym(RTLD_NEXT, name) answers it),
// found in the loaded objects' symbol tables (allocator/loaded_objects.h) where it can be: a dlsym there
// would replace the program's pending dlerror() text with its own success, and these lookups
// happen at the program's calls (its first fork, wait or sleep), between its failed dlopen and
// the dlerror() that asks why. dlsym for what the walk does not take (an IFUNC symbol), and in a
// fork child: the walk takes the loader's lock of dl_iterate_phdr, which glibc 2.36 leaves in the
// child as the fork found it (held, if another thread was walking then), where it resets the lock
// dlsym takes.
void* lookup_original(const char* name) noexcept;

// The definition of `name` that follows this library's, looked up on first use and kept in `cache`
// (a wrapper's own static); null when there is none.
template <typename Function>
Function cached_next_symbol(std::atomic<Function>& cache, const char* name) noexcept {
  Function function = cache.load(std::memory_order_acquire);
  if (function == nullptr) {
    function = reinterpret_cast<Function>(lookup_original(name));
    cache.store(function, std::memory_order_release);
  }
  return function;
}

// A return type and a parameter list cannot be parenthesised: bugprone-macro-parentheses is off here.
#define HEAPKEEPER_DECLARE_ORIGINAL(name, return_type, parameters)                            \
  using name##_function = return_type(*) parameters; /* NOLINT(bugprone-macro-parentheses) */ \
  name##_function original_##name();
HEAPKEEPER_FORWARDED_FUNCTIONS(HEAPKEEPER_DECLARE_ORIGINAL)
HEAPKEEPER_KERNEL_ROOT_FUNCTIONS(HEAPKEEPER_DECLARE_ORIGINAL)
HEAPKEEPER_LOADER_FUNCTIONS(HEAPKEEPER_DECLARE_ORIGINAL)
HEAPKEEPER_PIPE_FUNCTIONS(HEAPKEEPER_DECLARE_ORIGINAL)
HEAPKEEPER_CREDENTIAL_FUNCTIONS(HEAPKEEPER_DECLARE_ORIGINAL)
HEAPKEEPER_EXEC_FUNCTIONS(HEAPKEEPER_DECLARE_ORIGINAL)
HEAPKEEPER_DESCRIPTOR_FUNCTIONS(HEAPKEEPER_DECLARE_ORIGINAL)
HEAPKEEPER_JUMP_FUNCTIONS(HEAPKEEPER_DECLARE_ORIGINAL)
#undef HEAPKEEPER_DECLARE_ORIGINAL

// Looks up the originals of the exec family and of dup2 and dup3, at start-up: fork children,
// which mostly redirect and exec at once, inherit them instead of each looking them up.
void resolve_child_originals() noexcept;

// Warns about every interposed symbol the dynamic linker does not resolve to this library.
void check_interposition();

// glibc's dlsym itself, without heapkeeper's routing of interposed names (symbol_lookup.cpp):
// what the dynamic linker binds a name to.
void* unrouted_dlsym(void* handle, const char* name) noexcept;

}  // namespace heapkeeper::preload
