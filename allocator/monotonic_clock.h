// CLOCK_MONOTONIC in nanoseconds: for deadlines that must not move with the wall clock (a deferred
// thread's due time, the first periodic scan; heapkeeper's threads sleep until them with
// thread_credentials.h's internal_sleep_until).
#pragma once

#include <time.h>

#include <cstdint>

namespace heapkeeper::alloc {

// The vDSO's clock: no system call.
inline uint64_t monotonic_ns() noexcept {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000000ull + static_cast<uint64_t>(now.tv_nsec);
}

}  // namespace heapkeeper::alloc
