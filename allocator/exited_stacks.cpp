// Implementation of the record of exited threads' stacks (see exited_stacks.h).
#include "allocator/exited_stacks.h"

namespace heapkeeper::alloc {
namespace {

ExitedStacks g_exited_stacks;

}  // namespace

ExitedStacks& exited_stacks() { return g_exited_stacks; }

// Makes the slot's sequence odd if it was even (nobody else writing it); false if it was taken.
bool ExitedStacks::begin_write(Slot& slot) noexcept {
  uint32_t sequence = slot.sequence.load(std::memory_order_relaxed);
  if (sequence & 1) return false;
  if (!slot.sequence.compare_exchange_strong(sequence, sequence + 1, std::memory_order_acquire)) return false;
  // The field stores below must not become visible before the odd sequence.
  std::atomic_thread_fence(std::memory_order_release);
  return true;
}

void ExitedStacks::note(const ExitedStack& stack) noexcept {
  if (stack.low >= stack.high) return;
  // A slot another writer holds is skipped; after a full turn the record is dropped (it only
  // means that stack is scanned as a root, as before).
  for (size_t attempt = 0; attempt < kSlots; ++attempt) {
    Slot& slot = slots_[next_.fetch_add(1, std::memory_order_relaxed) % kSlots];
    if (!begin_write(slot)) continue;
    slot.tid.store(stack.tid, std::memory_order_relaxed);
    slot.low.store(stack.low, std::memory_order_relaxed);
    slot.high.store(stack.high, std::memory_order_relaxed);
    slot.thread_pointer.store(stack.thread_pointer, std::memory_order_relaxed);
    slot.sequence.fetch_add(1, std::memory_order_release);
    return;
  }
}

void ExitedStacks::forget_overlapping(uintptr_t low, uintptr_t high) noexcept {
  for (Slot& slot : slots_) {
    const uintptr_t slot_low = slot.low.load(std::memory_order_relaxed);
    const uintptr_t slot_high = slot.high.load(std::memory_order_relaxed);
    if (slot_low >= slot_high || slot_high <= low || slot_low >= high) continue;
    // Retried until it is this thread's to clear: a record of the stack we now run on must not
    // survive (the collector would take our live frames for dead ones).
    while (!begin_write(slot)) {
    }
    slot.low.store(0, std::memory_order_relaxed);
    slot.high.store(0, std::memory_order_relaxed);
    slot.sequence.fetch_add(1, std::memory_order_release);
  }
}

void ExitedStacks::after_fork_in_child() noexcept {
  for (Slot& slot : slots_) {
    const uint32_t sequence = slot.sequence.load(std::memory_order_relaxed);
    if ((sequence & 1) == 0) continue;
    slot.low.store(0, std::memory_order_relaxed);
    slot.high.store(0, std::memory_order_relaxed);
    slot.sequence.store(sequence + 1, std::memory_order_release);
  }
}

size_t ExitedStacks::snapshot(ExitedStack* out, size_t capacity) const noexcept {
  size_t count = 0;
  for (const Slot& slot : slots_) {
    if (count >= capacity) break;
    const uint32_t before = slot.sequence.load(std::memory_order_acquire);
    if (before & 1) continue;  // being written (its writer may be stopped mid-way)
    ExitedStack stack;
    stack.tid = slot.tid.load(std::memory_order_relaxed);
    stack.low = slot.low.load(std::memory_order_relaxed);
    stack.high = slot.high.load(std::memory_order_relaxed);
    stack.thread_pointer = slot.thread_pointer.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (slot.sequence.load(std::memory_order_relaxed) != before || stack.low >= stack.high) continue;
    out[count++] = stack;
  }
  return count;
}

}  // namespace heapkeeper::alloc
