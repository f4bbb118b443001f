// CLOCK_MONOTONIC in nanoseconds, and a sleep until such a time: for deadlines that must not move
// with the wall clock (a deferred thread's due time, the first periodic scan).
#pragma once

#include <time.h>

#include <cerrno>
#include <cstdint>

namespace heapkeeper::alloc {

// The vDSO's clock: no system call.
inline uint64_t monotonic_ns() noexcept {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000000ull + static_cast<uint64_t>(now.tv_nsec);
}

// Sleeps until monotonic_ns() reaches `deadline_ns` (at once if it has), whatever interrupts it.
inline void sleep_until_monotonic(uint64_t deadline_ns) noexcept {
  const timespec deadline{static_cast<time_t>(deadline_ns / 1000000000ull),
                          static_cast<long>(deadline_ns % 1000000000ull)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nullptr) == EINTR) {
  }
}

}  // namespace heapkeeper::alloc
