// ExitedStacks: where the threads that have exited had their stacks, for the collector.
//
// When a thread exits, glibc keeps the stack it allocated for it (up to 40 MB of them) and hands
// it to a later pthread_create; until then the mapping stays as the thread left it. Nothing of the
// program can reach into it any more, but it is full of stale words: dead frames of the thread's
// last calls, and the vector registers the dynamic linker's lazy binding saved there (which a
// thread inherits from its creator at clone, with whatever pointers a memcpy left in them). The
// collector treats every anonymous writable mapping as a possible root, so without this record
// those stale words kept blocks alive, and a verdict depended on the machine: on one with more
// CPUs (more arenas) or AVX-512, the memory those stale words pointed at was reused for blocks
// that were then leaked, and the exit scan missed them.
//
// Only stacks glibc allocated are recorded: a stack the program supplied (pthread_attr_setstack)
// is the program's memory again once its thread has gone. A record names the thread (tid), its
// stack [low, high) and its thread pointer; the collector checks each against the running
// threads before it trusts it (see collector/root_scan.cpp). A thread registering on a stack
// removes any record of that stack: it is live again.
//
// Writers are exiting and starting threads, at any time; the reader is the collector with every
// other thread stopped, possibly half-way through a write. So no lock: each slot carries a
// sequence number, odd while it is being written, and a reader skips a slot that is odd or changed
// under it (a seqlock). The table is a ring: when more threads exit than it holds, the oldest
// records are overwritten, and their stacks are scanned as roots again — a leak can be missed
// that way, never invented.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace heapkeeper::alloc {

struct ExitedStack {
  pid_t tid = 0;
  uintptr_t low = 0, high = 0;   // the stack as pthread_getattr_np described it (guard page excluded)
  uintptr_t thread_pointer = 0;  // its pthread_t: glibc's thread control block, at the top
};

class ExitedStacks {
 public:
  static constexpr size_t kSlots = 256;

  // The calling thread is exiting; glibc will keep its stack.
  void note(const ExitedStack& stack) noexcept;
  // A thread now runs on [low, high): whatever overlaps it is no longer an exited thread's.
  void forget_overlapping(uintptr_t low, uintptr_t high) noexcept;
  // Copies the consistent records into `out` (at most `capacity`); returns how many. Never
  // blocks: safe with the other threads stopped anywhere.
  size_t snapshot(ExitedStack* out, size_t capacity) const noexcept;
  // In a forked child: a slot some other thread was writing stays half-written forever, so it is
  // emptied (only the calling thread exists).
  void after_fork_in_child() noexcept;

 private:
  struct Slot {
    std::atomic<uint32_t> sequence{0};  // odd: being written
    std::atomic<pid_t> tid{0};
    std::atomic<uintptr_t> low{0}, high{0}, thread_pointer{0};
  };
  bool begin_write(Slot& slot) noexcept;
  Slot slots_[kSlots];
  std::atomic<uint32_t> next_{0};
};

ExitedStacks& exited_stacks();

}  // namespace heapkeeper::alloc
