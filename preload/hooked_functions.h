// The one list of symbols libheapkeeper.so interposes (as memray's MEMRAY_HOOKED_FUNCTIONS).
//
// HEAPKEEPER_INTERPOSED_SYMBOLS lists every exported allocation symbol; start-up checks that the
// dynamic linker resolves each of them to this library (it does not when the program is linked
// statically, or when another preloaded library defines them first) and says which are not.
// HEAPKEEPER_SYMBOL_LOOKUP_FUNCTIONS are interposed too (and checked likewise).
// HEAPKEEPER_FORWARDED_FUNCTIONS lists the functions whose original heapkeeper calls after doing
// its part; it generates their pointer types and the table of originals.
#pragma once

// The lists keep one symbol family per line, which clang-format would pack differently.
// clang-format off

#define HEAPKEEPER_INTERPOSED_SYMBOLS(X)                                                                  \
  X(malloc) X(free) X(calloc) X(realloc) X(reallocarray) X(posix_memalign) X(aligned_alloc) X(memalign)   \
  X(valloc) X(pvalloc) X(malloc_usable_size) X(malloc_trim)                                              \
  X(mallocx) X(rallocx) X(xallocx) X(sallocx) X(dallocx) X(sdallocx) X(nallocx) X(mallctl)               \
  X(mallctlnametomib) X(mallctlbymib) X(malloc_stats_print)                                              \
  X(_Znwm) X(_Znam) X(_ZnwmRKSt9nothrow_t) X(_ZnamRKSt9nothrow_t) X(_ZnwmSt11align_val_t)                  \
  X(_ZnamSt11align_val_t) X(_ZnwmSt11align_val_tRKSt9nothrow_t) X(_ZnamSt11align_val_tRKSt9nothrow_t)     \
  X(_ZdlPv) X(_ZdaPv) X(_ZdlPvRKSt9nothrow_t) X(_ZdaPvRKSt9nothrow_t) X(_ZdlPvm) X(_ZdaPvm)               \
  X(_ZdlPvSt11align_val_t) X(_ZdaPvSt11align_val_t) X(_ZdlPvSt11align_val_tRKSt9nothrow_t)                \
  X(_ZdaPvSt11align_val_tRKSt9nothrow_t) X(_ZdlPvmSt11align_val_t) X(_ZdaPvmSt11align_val_t)              \
  X(pthread_create) X(pthread_sigmask) X(sigprocmask)

// X(name, return type, parameter list)
#define HEAPKEEPER_FORWARDED_FUNCTIONS(X)                                                \
  X(pthread_create, int, (pthread_t*, const pthread_attr_t*, void* (*)(void*), void*)) \
  X(pthread_sigmask, int, (int, const sigset_t*, sigset_t*))                            \
  X(sigprocmask, int, (int, const sigset_t*, sigset_t*))

// The dynamic linker's lookup functions. Through them, an interposed symbol asked of any handle
// resolves to heapkeeper's (symbol_lookup.cpp); their entry points are assembly
// (symbol_lookup_entry.S) so that the originals still see the program as their caller, which
// exists for x86-64 only.
#if defined(__x86_64__)
#define HEAPKEEPER_SYMBOL_LOOKUP_FUNCTIONS(X) X(dlsym) X(dlvsym)
#else
#define HEAPKEEPER_SYMBOL_LOOKUP_FUNCTIONS(X)
#endif
// clang-format on
