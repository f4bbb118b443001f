// The entry points of heapkeeper's private jemalloc copy (Debian's libjemalloc_pic.a with its
// public names renamed to hk_je_*, see cmake/PrivateJemalloc.cmake).
//
// Debian's <jemalloc/jemalloc.h> is included for the MALLOCX_* flag macros and extent_hooks_t,
// which are part of jemalloc's stable ABI; the functions it declares under their plain names are
// never called from here, because in the traced process those names are heapkeeper's own hooks.
#pragma once

#include <pthread.h>

#include <cstddef>

#include <jemalloc/jemalloc.h>

extern "C" {
void* hk_je_malloc(size_t size);
void* hk_je_calloc(size_t count, size_t size);
void hk_je_free(void* ptr);
void* hk_je_mallocx(size_t size, int flags);
void* hk_je_rallocx(void* ptr, size_t size, int flags);
size_t hk_je_xallocx(void* ptr, size_t size, size_t extra, int flags);
size_t hk_je_sallocx(const void* ptr, int flags);
void hk_je_dallocx(void* ptr, int flags);
void hk_je_sdallocx(void* ptr, size_t size, int flags);
size_t hk_je_nallocx(size_t size, int flags);
int hk_je_mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen);
int hk_je_mallctlnametomib(const char* name, size_t* mibp, size_t* miblenp);
int hk_je_mallctlbymib(const size_t* mib, size_t miblen, void* oldp, size_t* oldlenp, void* newp, size_t newlen);
void hk_je_malloc_stats_print(void (*write_cb)(void*, const char*), void* cbopaque, const char* opts);

// Two internals of jemalloc 5.3 (built with TLS, as Debian's is), not renamed because the archive
// hides them: the pthread key whose destructor tears a thread's jemalloc state down, and that
// destructor. The thread registry takes the teardown into its own hands so that it happens after
// the program's key destructors, not before them (see thread_registry.h).
extern pthread_key_t je_tsd_tsd;
void je_tsd_cleanup(void* thread_data);

// And its cache-oblivious layout: a build option in 5.3 (Debian's build has it on), not a
// MALLOC_CONF one, which jemalloc's boot turns into the padding of every large extent (a page, and
// a random offset into it). PrivateHeap::initialize turns both off before heapkeeper's first
// allocation.
extern bool je_opt_cache_oblivious;
extern size_t je_sz_large_pad;

// jemalloc's boot metadata (its `base_t`, at the start of the first block its base mapped, before
// heapkeeper set arena 0's hooks): only its address is used, to name that block in the RSS
// breakdown (stats/memory_figures.h).
void* je_b0get(void);
}
