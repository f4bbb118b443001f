// Every call into heapkeeper's private jemalloc goes through these wrappers, which mark the
// thread as "inside jemalloc" for the duration of the call.
//
// jemalloc is not reentrant on a thread: its per-thread state (thread cache, event counters, decay
// tickers) is shared by every arena, so a signal handler that allocates while the interrupted code
// is inside jemalloc must not enter it again, whichever arena it names. The engine checks the mark
// on entry and serves such calls without jemalloc (signal_safe_pool.h, deferred frees).
#pragma once

#include "allocator/jemalloc_api.h"
#include "allocator/thread_registry.h"

namespace heapkeeper::alloc::je {

class Call {
 public:
  Call() { ++tls_thread.in_jemalloc; }
  ~Call() { --tls_thread.in_jemalloc; }
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;
};

inline void* malloc(size_t size) {
  Call c;
  return hk_je_malloc(size);
}
inline void* calloc(size_t count, size_t size) {
  Call c;
  return hk_je_calloc(count, size);
}
inline void* mallocx(size_t size, int flags) {
  Call c;
  return hk_je_mallocx(size, flags);
}
inline void* rallocx(void* ptr, size_t size, int flags) {
  Call c;
  return hk_je_rallocx(ptr, size, flags);
}
inline size_t xallocx(void* ptr, size_t size, size_t extra, int flags) {
  Call c;
  return hk_je_xallocx(ptr, size, extra, flags);
}
inline size_t sallocx(const void* ptr, int flags) {
  Call c;
  return hk_je_sallocx(ptr, flags);
}
inline void dallocx(void* ptr, int flags) {
  Call c;
  hk_je_dallocx(ptr, flags);
}
inline void sdallocx(void* ptr, size_t size, int flags) {
  Call c;
  hk_je_sdallocx(ptr, size, flags);
}
inline size_t nallocx(size_t size, int flags) {
  Call c;
  return hk_je_nallocx(size, flags);
}
inline int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  Call c;
  return hk_je_mallctl(name, oldp, oldlenp, newp, newlen);
}
inline int mallctlnametomib(const char* name, size_t* mibp, size_t* miblenp) {
  Call c;
  return hk_je_mallctlnametomib(name, mibp, miblenp);
}
inline int mallctlbymib(const size_t* mib, size_t miblen, void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  Call c;
  return hk_je_mallctlbymib(mib, miblen, oldp, oldlenp, newp, newlen);
}
inline void malloc_stats_print(void (*write_cb)(void*, const char*), void* cbopaque, const char* opts) {
  Call c;
  hk_je_malloc_stats_print(write_cb, cbopaque, opts);
}

}  // namespace heapkeeper::alloc::je
