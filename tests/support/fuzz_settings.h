// The fuzz tests' shared settings: a seed (HEAPKEEPER_FUZZ_SEED replays a failing run; by default
// a fresh one, which the tests print on failure) and how many rounds (HEAPKEEPER_FUZZ_ITERATIONS,
// fewer under the sanitizers in scripts/test.sh).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <random>

namespace heapkeeper::test_support {

inline uint64_t fuzz_seed() {
  static const uint64_t value = [] {
    const char* text = std::getenv("HEAPKEEPER_FUZZ_SEED");
    return text != nullptr ? std::strtoull(text, nullptr, 10) : std::random_device{}();
  }();
  return value;
}

inline int fuzz_iterations(int normal) {
  const char* text = std::getenv("HEAPKEEPER_FUZZ_ITERATIONS");
  return text != nullptr ? std::max(1, std::atoi(text)) : normal;
}

}  // namespace heapkeeper::test_support
