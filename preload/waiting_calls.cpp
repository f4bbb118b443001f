// The exported waiting calls (waiting_functions.h): each tells the engine that the program waits,
// then calls libc's original with the same arguments; results and errno are the original's. Not
// noexcept: pthread_cancel unwinds through these frames.
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>

#include "allocator/engine.h"
#include "preload/waiting_functions.h"

#define HK_EXPORT extern "C" __attribute__((visibility("default")))

namespace {
// The originals, looked up at start-up (resolve_waiting_originals): a program's first waitpid may
// come from a SIGCHLD handler, where dlsym could deadlock on the loader's lock.
#define HEAPKEEPER_DECLARE_ORIGINAL(name, return_type, parameters, arguments) \
  std::atomic<return_type(*) parameters> g_original_##name{nullptr}; /* NOLINT(bugprone-macro-parentheses) */
HEAPKEEPER_WAITING_FUNCTIONS(HEAPKEEPER_DECLARE_ORIGINAL)
#undef HEAPKEEPER_DECLARE_ORIGINAL
}  // namespace

void heapkeeper::preload::resolve_waiting_originals() {
#define HEAPKEEPER_RESOLVE_ORIGINAL(name, return_type, parameters, arguments)                                        \
  g_original_##name.store(reinterpret_cast<return_type(*) parameters>(/* NOLINT */                                   \
                                                                      heapkeeper::alloc::lookup_next_symbol(#name)), \
                          std::memory_order_release);
  HEAPKEEPER_WAITING_FUNCTIONS(HEAPKEEPER_RESOLVE_ORIGINAL)
#undef HEAPKEEPER_RESOLVE_ORIGINAL
}

// bugprone-macro-parentheses: a return type and a parameter list cannot be parenthesised.
#define HEAPKEEPER_DEFINE_WAITING(name, return_type, parameters, arguments)                \
  HK_EXPORT return_type name parameters {                                                  \
    using Function = return_type(*) parameters; /* NOLINT(bugprone-macro-parentheses) */   \
    Function function = g_original_##name.load(std::memory_order_acquire);                 \
    if (function == nullptr) {                                                             \
      function = reinterpret_cast<Function>(heapkeeper::alloc::lookup_next_symbol(#name)); \
      if (function == nullptr) {                                                           \
        errno = ENOSYS;                                                                    \
        return static_cast<return_type>(-1);                                               \
      }                                                                                    \
      g_original_##name.store(function, std::memory_order_release);                        \
    }                                                                                      \
    heapkeeper::alloc::note_program_waits();                                               \
    return function arguments;                                                             \
  }
HEAPKEEPER_WAITING_FUNCTIONS(HEAPKEEPER_DEFINE_WAITING)
#undef HEAPKEEPER_DEFINE_WAITING
