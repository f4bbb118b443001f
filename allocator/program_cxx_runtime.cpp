// See program_cxx_runtime.h. The Itanium C++ ABI names everything used here, so one lookup table
// serves libstdc++ and libc++abi alike.
#include "allocator/program_cxx_runtime.h"

#include <dlfcn.h>
#include <stdlib.h>

#include <atomic>

#include "allocator/diagnostics.h"
#include "allocator/engine.h"
#include "allocator/loaded_objects.h"

namespace heapkeeper::alloc {
namespace {

// Looks `name` up in the program's objects (`next`: in those listed after libheapkeeper.so, for
// the functions it exports itself), a C++ runtime loaded with RTLD_LOCAL (a C program's plugin
// written in C++, a Python extension) included. heapkeeper's own copy of libstdc++ is hidden, so
// it is never the answer. Through the objects' symbol tables (loaded_objects.h), not dlsym: these
// lookups happen at the program's failed or nothrow operator new, and a dlsym there replaced a
// pending dlerror() text (from the program's failed dlopen) with its own success. In a fork child
// dlsym first, as preload/original_functions.h's lookups do; anything it allocates is internal.
void* program_symbol(const char* name, bool next) noexcept {
  if (!in_forked_child()) return next ? next_definition(name) : program_definition(name);
  void* address = nullptr;
  if (next) {
    address = lookup_next_symbol(name);
  } else {
    enter_internal();
    address = dlsym(RTLD_DEFAULT, name);
    leave_internal();
  }
  return address != nullptr ? address : program_definition(name);
}

template <typename Function>
Function cached_symbol(std::atomic<void*>& cache, const char* name, bool next = false) noexcept {
  void* address = cache.load(std::memory_order_acquire);
  if (address == nullptr) {
    address = program_symbol(name, next);
    cache.store(address, std::memory_order_release);
  }
  return reinterpret_cast<Function>(address);
}

std::atomic<void*> g_get_new_handler{nullptr};
std::atomic<void*> g_allocate_exception{nullptr};
std::atomic<void*> g_throw{nullptr};
std::atomic<void*> g_bad_alloc_typeinfo{nullptr};
std::atomic<void*> g_bad_alloc_vtable{nullptr};
std::atomic<void*> g_bad_alloc_destructor{nullptr};
std::atomic<void*> g_nothrow_new{nullptr};
std::atomic<void*> g_nothrow_new_aligned{nullptr};

}  // namespace

std::new_handler program_new_handler() noexcept {
  using GetNewHandler = std::new_handler (*)();
  const auto get = cached_symbol<GetNewHandler>(g_get_new_handler, "_ZSt15get_new_handlerv");
  return get != nullptr ? get() : nullptr;
}

void throw_program_bad_alloc() {
  using AllocateException = void* (*)(size_t);
  using Throw = void (*)(void*, void*, void (*)(void*));
  const auto allocate_exception = cached_symbol<AllocateException>(g_allocate_exception, "__cxa_allocate_exception");
  const auto raise = cached_symbol<Throw>(g_throw, "__cxa_throw");
  void* const typeinfo = cached_symbol<void*>(g_bad_alloc_typeinfo, "_ZTISt9bad_alloc");
  const auto vtable = cached_symbol<char*>(g_bad_alloc_vtable, "_ZTVSt9bad_alloc");
  const auto destructor = cached_symbol<void (*)(void*)>(g_bad_alloc_destructor, "_ZNSt9bad_allocD1Ev");
  if (allocate_exception == nullptr || raise == nullptr || typeinfo == nullptr || vtable == nullptr) {
    DiagnosticLine()
        .text("operator new failed and the program has no C++ runtime to throw std::bad_alloc through; aborting")
        .emit();
    abort();
  }
  // `throw std::bad_alloc()` spelled out: the object is its vtable pointer alone, and a class's
  // vtable symbol names the table, whose address point is two words in (offset-to-top, typeinfo).
  void* exception = allocate_exception(sizeof(void*));
  *static_cast<void**>(exception) = vtable + 2 * sizeof(void*);
  raise(exception, typeinfo, destructor);
  abort();  // __cxa_throw does not return
}

void* program_nothrow_new(size_t size, size_t alignment) noexcept {
  if (alignment == 0) {
    using NothrowNew = void* (*)(size_t, const std::nothrow_t&) noexcept;
    const auto call = cached_symbol<NothrowNew>(g_nothrow_new, "_ZnwmRKSt9nothrow_t", true);
    return call != nullptr ? call(size, std::nothrow) : nullptr;
  }
  using NothrowNewAligned = void* (*)(size_t, std::align_val_t, const std::nothrow_t&) noexcept;
  const auto call = cached_symbol<NothrowNewAligned>(g_nothrow_new_aligned, "_ZnwmSt11align_val_tRKSt9nothrow_t", true);
  return call != nullptr ? call(size, static_cast<std::align_val_t>(alignment), std::nothrow) : nullptr;
}

}  // namespace heapkeeper::alloc
