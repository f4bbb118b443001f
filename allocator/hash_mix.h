// One step of a non-linear hash, for checks that sum terms (the identity of stacks through
// unloaded code; the stack cache's check now folds a 128-bit product per pair of words instead,
// stack_capture.cpp): a multiply whose high bits are folded back into the low ones. Not linear in either modular arithmetic, so summed terms do not cancel out (half of
// MurmurHash3's fmix64; the whole costs a stack-cache hit twice as much).
#pragma once

#include <cstdint>

namespace heapkeeper::alloc {

inline uint64_t mix(uint64_t x) {
  x *= 0xff51afd7ed558ccdull;
  return x ^ (x >> 29);
}

}  // namespace heapkeeper::alloc
