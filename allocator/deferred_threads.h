// heapkeeper's own threads that a short process never needs (a fork child's live-stats publisher),
// started at the first sign that the process lives on rather than at once: a blocking or waiting
// call or a new thread of the program, at any time, or an allocation once the thread's delay has
// passed. A thread cost each fork child 0.15 ms and 40 page faults, and most children of a shell
// or make exec at once (issue #12).
//
// A process that neither blocks in a call heapkeeper wraps, nor starts a thread, nor allocates
// after the delay gets its thread at none of these points: a pure computation that allocated
// everything up front. Its figures would not change anyway until it allocates again.
#pragma once

#include <atomic>
#include <cstdint>

namespace heapkeeper::alloc {

// Records `routine` to run as an internal thread (start_internal_thread) at the first wake point;
// `delay_ms` from now on, an allocation is one. Registering the same routine again (in a fork
// child) replaces the earlier request.
void start_internal_thread_later(void (*routine)(), const char* name, uint32_t delay_ms) noexcept;

// Wake points: `waiting` when the program is about to block or has started a thread.
void start_deferred_threads_slow(bool waiting) noexcept;
extern std::atomic<bool> g_deferred_threads_pending;
inline void start_deferred_threads(bool waiting) noexcept {
  if (__builtin_expect(g_deferred_threads_pending.load(std::memory_order_relaxed), 0))
    start_deferred_threads_slow(waiting);
}

// In a forked child, before the fork-child handlers: the parent's requests are the parent's.
void forget_deferred_threads() noexcept;

}  // namespace heapkeeper::alloc
