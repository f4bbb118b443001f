// ForkReplaceable<T>: a process-wide instance, made on first use, never destroyed, and replaced
// (not reset) in a forked child.
//
// heapkeeper's stateful helpers (the symbolizer, the collector's state) are used until the very
// end of exit, so they are never destroyed; and after fork() the parent's copy may be locked or
// half-updated by a thread that does not exist in the child, so the child leaves it alone and
// starts a fresh one (as memray's Tracker::childFork does). The small leak is the price of never
// touching a lock nobody can release.
#pragma once

#include <atomic>

namespace heapkeeper::alloc {

template <typename T>
class ForkReplaceable {
 public:
  T& get() {
    T* current = instance_.load(std::memory_order_acquire);
    if (current != nullptr) return *current;
    auto* fresh = new T();
    if (!instance_.compare_exchange_strong(current, fresh, std::memory_order_acq_rel)) {
      delete fresh;  // another thread made it first
      return *current;
    }
    return *fresh;
  }
  // For a fork-child handler: the parent's instance is abandoned, deliberately.
  void replace_in_child() { instance_.store(new T(), std::memory_order_release); }

 private:
  std::atomic<T*> instance_{nullptr};
};

}  // namespace heapkeeper::alloc
