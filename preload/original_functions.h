// The table of original functions heapkeeper forwards to (generated from hooked_functions.h).
#pragma once

#include <aio.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <time.h>

#include "preload/hooked_functions.h"

namespace heapkeeper::preload {

// A return type and a parameter list cannot be parenthesised: bugprone-macro-parentheses is off here.
#define HEAPKEEPER_DECLARE_ORIGINAL(name, return_type, parameters)                            \
  using name##_function = return_type(*) parameters; /* NOLINT(bugprone-macro-parentheses) */ \
  name##_function original_##name();
HEAPKEEPER_FORWARDED_FUNCTIONS(HEAPKEEPER_DECLARE_ORIGINAL)
HEAPKEEPER_KERNEL_ROOT_FUNCTIONS(HEAPKEEPER_DECLARE_ORIGINAL)
HEAPKEEPER_LOADER_FUNCTIONS(HEAPKEEPER_DECLARE_ORIGINAL)
HEAPKEEPER_PIPE_FUNCTIONS(HEAPKEEPER_DECLARE_ORIGINAL)
HEAPKEEPER_JUMP_FUNCTIONS(HEAPKEEPER_DECLARE_ORIGINAL)
#undef HEAPKEEPER_DECLARE_ORIGINAL

// Warns about every interposed symbol the dynamic linker does not resolve to this library.
void check_interposition();

// glibc's dlsym itself, without heapkeeper's routing of interposed names (symbol_lookup.cpp):
// what the dynamic linker binds a name to.
void* unrouted_dlsym(void* handle, const char* name) noexcept;

}  // namespace heapkeeper::preload
