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

// bugprone-macro-parentheses: a return type and a parameter list cannot be parenthesised.
#define HEAPKEEPER_DEFINE_WAITING(name, return_type, parameters, arguments)                \
  HK_EXPORT return_type name parameters {                                                  \
    using Function = return_type(*) parameters; /* NOLINT(bugprone-macro-parentheses) */   \
    static std::atomic<Function> original{nullptr};                                        \
    Function function = original.load(std::memory_order_acquire);                          \
    if (function == nullptr) {                                                             \
      function = reinterpret_cast<Function>(heapkeeper::alloc::lookup_next_symbol(#name)); \
      if (function == nullptr) {                                                           \
        errno = ENOSYS;                                                                    \
        return static_cast<return_type>(-1);                                               \
      }                                                                                    \
      original.store(function, std::memory_order_release);                                 \
    }                                                                                      \
    heapkeeper::alloc::note_program_waits();                                               \
    return function arguments;                                                             \
  }
HEAPKEEPER_WAITING_FUNCTIONS(HEAPKEEPER_DEFINE_WAITING)
#undef HEAPKEEPER_DEFINE_WAITING
