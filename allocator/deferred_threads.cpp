// See deferred_threads.h.
#include "allocator/deferred_threads.h"

#include <time.h>

#include <cstring>

#include "allocator/diagnostics.h"
#include "allocator/engine.h"

namespace heapkeeper::alloc {

std::atomic<bool> g_deferred_threads_pending{false};

namespace {

constexpr int kSlots = 4;

// A slot is claimed (kPending) by registration, which runs at start-up or in a fork child with
// one thread; a wake point on any thread takes it (kPending -> kStarting) exactly once.
enum SlotState : int { kEmpty, kPending, kStarting };
struct Slot {
  std::atomic<int> state{kEmpty};
  void (*routine)() = nullptr;
  char name[16] = {};
  uint64_t due_ns = 0;
};
Slot g_slots[kSlots];

uint64_t monotonic_ns() noexcept {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);  // the vDSO: no system call
  return static_cast<uint64_t>(now.tv_sec) * 1000000000ull + static_cast<uint64_t>(now.tv_nsec);
}

void refresh_pending() noexcept {
  bool any = false;
  for (const Slot& slot : g_slots) any = any || slot.state.load(std::memory_order_acquire) == kPending;
  g_deferred_threads_pending.store(any, std::memory_order_release);
}

}  // namespace

void start_internal_thread_later(void (*routine)(), const char* name, uint32_t delay_ms) noexcept {
  Slot* free_slot = nullptr;
  for (Slot& slot : g_slots) {
    if (slot.routine == routine || (free_slot == nullptr && slot.state.load(std::memory_order_acquire) == kEmpty)) {
      free_slot = &slot;
      if (slot.routine == routine) break;
    }
  }
  if (free_slot == nullptr) {  // more requests than slots: a bug of heapkeeper's, start it now
    if (!start_internal_thread(routine, name)) DiagnosticLine().text("could not start ").text(name).emit();
    return;
  }
  free_slot->routine = routine;
  std::strncpy(free_slot->name, name, sizeof(free_slot->name) - 1);
  free_slot->due_ns = monotonic_ns() + uint64_t{delay_ms} * 1000000ull;
  free_slot->state.store(kPending, std::memory_order_release);
  g_deferred_threads_pending.store(true, std::memory_order_release);
}

void start_deferred_threads_slow(bool waiting) noexcept {
  const uint64_t now = waiting ? 0 : monotonic_ns();
  for (Slot& slot : g_slots) {
    if (slot.state.load(std::memory_order_acquire) != kPending) continue;
    if (!waiting && now < slot.due_ns) continue;
    int expected = kPending;
    if (!slot.state.compare_exchange_strong(expected, kStarting, std::memory_order_acq_rel)) continue;
    if (!start_internal_thread(slot.routine, slot.name))
      DiagnosticLine().text("could not start heapkeeper's thread ").text(slot.name).emit();
  }
  refresh_pending();
}

void forget_deferred_threads() noexcept {
  for (Slot& slot : g_slots) {
    slot.state.store(kEmpty, std::memory_order_relaxed);
    slot.routine = nullptr;
  }
  g_deferred_threads_pending.store(false, std::memory_order_release);
}

}  // namespace heapkeeper::alloc
