// The exported allocation symbols. Each one forwards to the engine and holds no policy: the
// semantics (errno, alignment rules, the new-handler loop) live in allocator/.
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/signalfd.h>

#include <cstddef>
#include <new>

#include "allocator/engine.h"
#include "allocator/unwinder_masks.h"
#include "collector/world_stop.h"
#include "preload/original_functions.h"

#define HK_EXPORT extern "C" __attribute__((visibility("default")))
#define HK_EXPORT_CXX __attribute__((visibility("default")))

namespace alloc = heapkeeper::alloc;

// Every function that allocates or frees first records its own frame (HK_ENTRY_FRAME, see
// allocator/engine.h): the stack capture starts from there.

HK_EXPORT void* malloc(size_t size) noexcept {
  HK_ENTRY_FRAME();
  return alloc::api_malloc(size);
}
HK_EXPORT void free(void* ptr) noexcept {
  HK_ENTRY_FRAME();
  alloc::api_free(ptr);
}
HK_EXPORT void* calloc(size_t count, size_t size) noexcept {
  HK_ENTRY_FRAME();
  return alloc::api_calloc(count, size);
}
HK_EXPORT void* realloc(void* ptr, size_t size) noexcept {
  HK_ENTRY_FRAME();
  return alloc::api_realloc(ptr, size);
}
HK_EXPORT void* reallocarray(void* ptr, size_t count, size_t size) noexcept {
  HK_ENTRY_FRAME();
  return alloc::api_reallocarray(ptr, count, size);
}
HK_EXPORT int posix_memalign(void** result, size_t alignment, size_t size) noexcept {
  HK_ENTRY_FRAME();
  return alloc::api_posix_memalign(result, alignment, size);
}
HK_EXPORT void* aligned_alloc(size_t alignment, size_t size) noexcept {
  HK_ENTRY_FRAME();
  return alloc::api_aligned_alloc(alignment, size);
}
HK_EXPORT void* memalign(size_t alignment, size_t size) noexcept {
  HK_ENTRY_FRAME();
  return alloc::api_memalign(alignment, size);
}
HK_EXPORT void* valloc(size_t size) noexcept {
  HK_ENTRY_FRAME();
  return alloc::api_valloc(size);
}
HK_EXPORT void* pvalloc(size_t size) noexcept {
  HK_ENTRY_FRAME();
  return alloc::api_pvalloc(size);
}
HK_EXPORT size_t malloc_usable_size(void* ptr) noexcept { return alloc::api_malloc_usable_size(ptr); }
HK_EXPORT int malloc_trim(size_t pad) noexcept { return alloc::api_malloc_trim(pad); }

// jemalloc's API, for programs linked with jemalloc.
HK_EXPORT void* mallocx(size_t size, int flags) noexcept {
  HK_ENTRY_FRAME();
  return alloc::api_mallocx(size, flags);
}
HK_EXPORT void* rallocx(void* ptr, size_t size, int flags) noexcept {
  HK_ENTRY_FRAME();
  return alloc::api_rallocx(ptr, size, flags);
}
HK_EXPORT size_t xallocx(void* ptr, size_t size, size_t extra, int flags) noexcept {
  HK_ENTRY_FRAME();
  return alloc::api_xallocx(ptr, size, extra, flags);
}
HK_EXPORT size_t sallocx(const void* ptr, int flags) noexcept { return alloc::api_sallocx(ptr, flags); }
HK_EXPORT void dallocx(void* ptr, int flags) noexcept {
  HK_ENTRY_FRAME();
  alloc::api_dallocx(ptr, flags);
}
HK_EXPORT void sdallocx(void* ptr, size_t, int flags) noexcept {
  HK_ENTRY_FRAME();
  alloc::api_dallocx(ptr, flags);
}
HK_EXPORT size_t nallocx(size_t size, int flags) noexcept { return alloc::api_nallocx(size, flags); }
HK_EXPORT int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen) noexcept {
  return alloc::api_mallctl(name, oldp, oldlenp, newp, newlen);
}
HK_EXPORT int mallctlnametomib(const char* name, size_t* mibp, size_t* miblenp) noexcept {
  return alloc::api_mallctlnametomib(name, mibp, miblenp);
}
HK_EXPORT int mallctlbymib(const size_t* mib, size_t miblen, void* oldp, size_t* oldlenp, void* newp,
                           size_t newlen) noexcept {
  return alloc::api_mallctlbymib(mib, miblen, oldp, oldlenp, newp, newlen);
}
HK_EXPORT void malloc_stats_print(void (*write_cb)(void*, const char*), void* cbopaque, const char* opts) noexcept {
  alloc::api_malloc_stats_print(write_cb, cbopaque, opts);
}

// C++ replaceable allocation functions.
HK_EXPORT_CXX void* operator new(size_t size) {
  HK_ENTRY_FRAME();
  return alloc::api_operator_new(size, 0);
}
HK_EXPORT_CXX void* operator new[](size_t size) {
  HK_ENTRY_FRAME();
  return alloc::api_operator_new(size, 0);
}
HK_EXPORT_CXX void* operator new(size_t size, const std::nothrow_t&) noexcept {
  HK_ENTRY_FRAME();
  return alloc::api_operator_new_nothrow(size, 0);
}
HK_EXPORT_CXX void* operator new[](size_t size, const std::nothrow_t&) noexcept {
  HK_ENTRY_FRAME();
  return alloc::api_operator_new_nothrow(size, 0);
}
HK_EXPORT_CXX void* operator new(size_t size, std::align_val_t alignment) {
  HK_ENTRY_FRAME();
  return alloc::api_operator_new_aligned(size, static_cast<size_t>(alignment));
}
HK_EXPORT_CXX void* operator new[](size_t size, std::align_val_t alignment) {
  HK_ENTRY_FRAME();
  return alloc::api_operator_new_aligned(size, static_cast<size_t>(alignment));
}
HK_EXPORT_CXX void* operator new(size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  HK_ENTRY_FRAME();
  return alloc::api_operator_new_aligned_nothrow(size, static_cast<size_t>(alignment));
}
HK_EXPORT_CXX void* operator new[](size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  HK_ENTRY_FRAME();
  return alloc::api_operator_new_aligned_nothrow(size, static_cast<size_t>(alignment));
}
HK_EXPORT_CXX void operator delete(void* ptr) noexcept {
  HK_ENTRY_FRAME();
  alloc::api_operator_delete(ptr);
}
HK_EXPORT_CXX void operator delete[](void* ptr) noexcept {
  HK_ENTRY_FRAME();
  alloc::api_operator_delete(ptr);
}
HK_EXPORT_CXX void operator delete(void* ptr, const std::nothrow_t&) noexcept {
  HK_ENTRY_FRAME();
  alloc::api_operator_delete(ptr);
}
HK_EXPORT_CXX void operator delete[](void* ptr, const std::nothrow_t&) noexcept {
  HK_ENTRY_FRAME();
  alloc::api_operator_delete(ptr);
}
HK_EXPORT_CXX void operator delete(void* ptr, size_t) noexcept {
  HK_ENTRY_FRAME();
  alloc::api_operator_delete(ptr);
}
HK_EXPORT_CXX void operator delete[](void* ptr, size_t) noexcept {
  HK_ENTRY_FRAME();
  alloc::api_operator_delete(ptr);
}
HK_EXPORT_CXX void operator delete(void* ptr, std::align_val_t) noexcept {
  HK_ENTRY_FRAME();
  alloc::api_operator_delete(ptr);
}
HK_EXPORT_CXX void operator delete[](void* ptr, std::align_val_t) noexcept {
  HK_ENTRY_FRAME();
  alloc::api_operator_delete(ptr);
}
HK_EXPORT_CXX void operator delete(void* ptr, std::align_val_t, const std::nothrow_t&) noexcept {
  HK_ENTRY_FRAME();
  alloc::api_operator_delete(ptr);
}
HK_EXPORT_CXX void operator delete[](void* ptr, std::align_val_t, const std::nothrow_t&) noexcept {
  HK_ENTRY_FRAME();
  alloc::api_operator_delete(ptr);
}
HK_EXPORT_CXX void operator delete(void* ptr, size_t, std::align_val_t) noexcept {
  HK_ENTRY_FRAME();
  alloc::api_operator_delete(ptr);
}
HK_EXPORT_CXX void operator delete[](void* ptr, size_t, std::align_val_t) noexcept {
  HK_ENTRY_FRAME();
  alloc::api_operator_delete(ptr);
}

// Thread creation: the new thread registers before running user code (the collector needs every
// thread's stack). The original is looked up on first use. A forked child that makes threads
// lives on: its deferred threads (live stats, allocator/engine.h) start first, since its threads
// may then only wait on each other (condition variables, which no trigger sees). heapkeeper's own
// threads are made with the guard held, which that start ignores.
HK_EXPORT int pthread_create(pthread_t* thread, const pthread_attr_t* attributes, void* (*routine)(void*),
                             void* argument) noexcept {
  if (__builtin_expect(alloc::deferred_threads_pending(), 0)) alloc::start_deferred_threads_for_program(true);
  void* (*wrapped_routine)(void*) = routine;
  void* wrapped_argument = argument;
  if (!alloc::wrap_thread_start(routine, argument, attributes, &wrapped_routine, &wrapped_argument)) {
    wrapped_routine = routine;
    wrapped_argument = argument;
  }
  auto original = heapkeeper::preload::original_pthread_create();
  int result = original != nullptr ? original(thread, attributes, wrapped_routine, wrapped_argument) : EAGAIN;
  if (result != 0 && wrapped_argument != argument) alloc::discard_thread_start(wrapped_argument);
  return result;
}

// Signal masks: the collector's suspend signal stays deliverable (see collector/world_stop.h).
HK_EXPORT int pthread_sigmask(int how, const sigset_t* set, sigset_t* old) noexcept {
  sigset_t scratch;
  auto original = heapkeeper::preload::original_pthread_sigmask();
  if (original == nullptr) return ENOSYS;
  return original(how, heapkeeper::collect::without_suspend_signal(how, set, &scratch, old != nullptr), old);
}
HK_EXPORT int sigprocmask(int how, const sigset_t* set, sigset_t* old) noexcept {
  // libunwind's blocks around heapkeeper's own unwinds are not needed there (unwinder_masks.h).
  if (alloc::tls_thread.guard != 0 &&
      alloc::elide_unwinder_mask_call(set, old, reinterpret_cast<uintptr_t>(__builtin_return_address(0))))
    return 0;
  sigset_t scratch;
  auto original = heapkeeper::preload::original_sigprocmask();
  if (original == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  return original(how, heapkeeper::collect::without_suspend_signal(how, set, &scratch, old != nullptr), old);
}

// A signalfd takes its thread's pending signals whether they are blocked or not: under the signal
// fallback, one whose mask holds SIGPWR could take a scan's suspend signal (see world_stop.h).
HK_EXPORT int signalfd(int fd, const sigset_t* mask, int flags) noexcept {
  sigset_t scratch;
  auto original = heapkeeper::preload::original_signalfd();
  if (original == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  return original(fd, heapkeeper::collect::without_suspend_signal(SIG_BLOCK, mask, &scratch), flags);
}

// The malloc family as called by heapkeeper's own copy of libstdc++ (linked in with --wrap, see
// CMakeLists.txt): always internal, even from a static constructor that runs before anything set
// the guard, since none of it is the program's.
extern "C" {
__attribute__((visibility("hidden"))) void* __wrap_malloc(size_t size) noexcept {
  alloc::enter_internal();
  void* p = alloc::api_malloc(size);
  alloc::leave_internal();
  return p;
}
__attribute__((visibility("hidden"))) void __wrap_free(void* ptr) noexcept {
  alloc::enter_internal();
  alloc::api_free(ptr);
  alloc::leave_internal();
}
__attribute__((visibility("hidden"))) void* __wrap_calloc(size_t count, size_t size) noexcept {
  alloc::enter_internal();
  void* p = alloc::api_calloc(count, size);
  alloc::leave_internal();
  return p;
}
__attribute__((visibility("hidden"))) void* __wrap_realloc(void* ptr, size_t size) noexcept {
  alloc::enter_internal();
  void* p = alloc::api_realloc(ptr, size);
  alloc::leave_internal();
  return p;
}
}
