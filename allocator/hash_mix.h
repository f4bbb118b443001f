// Non-linear hash steps. mix(), for checks that sum terms (the identity of stacks through unloaded
// code): a multiply whose high bits are folded back into the low ones. Not linear in either
// modular arithmetic, so summed terms do not cancel out (half of MurmurHash3's fmix64).
// fold_multiply(), below, for the stack cache's check and the walk of Python frames.
#pragma once

#include <cstdint>

namespace heapkeeper::alloc {

inline uint64_t mix(uint64_t x) {
  x *= 0xff51afd7ed558ccdull;
  return x ^ (x >> 29);
}

// The 128-bit product of a and b with its halves xored (wyhash's "mum"): one multiply that mixes
// every bit of both into every bit of the result, and not linear, so sums and chains of such terms
// do not cancel out. The stack cache's check takes it per pair of words, the Python frames' walk
// per frame (stack_capture.cpp, python_frames.cpp).
inline uint64_t fold_multiply(uint64_t a, uint64_t b) {
#if defined(__x86_64__)
  // One mulq: GCC 12 stores an unsigned __int128 product to the stack and loads it back (3 of
  // the 17 instructions a pair of words took).
  uint64_t low, high;
  __asm__("mulq %3" : "=a"(low), "=d"(high) : "%a"(a), "rm"(b) : "cc");
  return low ^ high;
#else
  const unsigned __int128 product = static_cast<unsigned __int128>(a) * b;
  return static_cast<uint64_t>(product) ^ static_cast<uint64_t>(product >> 64);
#endif
}

}  // namespace heapkeeper::alloc
