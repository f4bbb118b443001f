/* 64 allocation call sites for test programs: site_10 ... site_87, each its own function that
 * recurses into itself `depth` times and then mallocs `size` plus its number, so that each has
 * distinct return addresses (stacks an unwinder has not seen), listed in kSites. */
#ifndef HEAPKEEPER_TESTS_CALL_SITES_H
#define HEAPKEEPER_TESTS_CALL_SITES_H

#include <stdlib.h>

typedef void* (*site_function)(int depth, size_t size);

#define SITE(n)                                                                     \
  static __attribute__((noinline)) void* site_##n(int depth, size_t size) {         \
    void* block = depth > 0 ? site_##n(depth - 1, size + (n)) : malloc(size + (n)); \
    __asm__ volatile("" ::"r"(block) : "memory");                                   \
    return block;                                                                   \
  }
#define SITES8(a) SITE(a##0) SITE(a##1) SITE(a##2) SITE(a##3) SITE(a##4) SITE(a##5) SITE(a##6) SITE(a##7)
SITES8(1)
SITES8(2)
SITES8(3)
SITES8(4)
SITES8(5)
SITES8(6)
SITES8(7)
SITES8(8)
#define LIST8(a) site_##a##0, site_##a##1, site_##a##2, site_##a##3, site_##a##4, site_##a##5, site_##a##6, site_##a##7
static const site_function kSites[] = {LIST8(1), LIST8(2), LIST8(3), LIST8(4), LIST8(5), LIST8(6), LIST8(7), LIST8(8)};
enum { kSiteCount = sizeof kSites / sizeof kSites[0] };

#endif
