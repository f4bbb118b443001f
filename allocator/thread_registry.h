// ThreadRegistry: every thread that allocates, with its counters, stack bounds and caches.
//
// Counters are per thread and written only by their owner with plain (relaxed) stores, so the hot
// path never shares a cache line with another thread; readers sum them off the hot path. Each
// thread also forwards its net live-byte change to a global total in steps of 256 KiB, which is
// what the peak is tracked on: exact to within 256 KiB per thread without a shared atomic per call.
//
// Thread exit is a small state machine (as jemalloc's tsd purgatory): kUnregistered -> kActive ->
// kExited. The thread stays kActive through the program's own exit work: C++ thread_local
// destructors run before any pthread-key destructor, and heapkeeper's key destructor re-arms itself
// until glibc's last destructor round (PTHREAD_DESTRUCTOR_ITERATIONS), so the program's key
// destructors of every earlier round allocate and free with the thread's own state, tracked with
// stacks like any other call. jemalloc's per-thread state must outlive them too: left to itself,
// its key (created before any of the program's) would be torn down in the first round, after which
// jemalloc serves every request of the thread from its arena 0, heapkeeper's internal memory. So
// registration takes the thread off jemalloc's key, and heapkeeper's last round runs jemalloc's
// teardown itself, after retiring the thread. Only what arrives after that (key destructors that
// re-arm themselves into the last round, glibc's TLS teardown) takes the defined slow path: counted
// into global atomics, never re-creating the state.
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace heapkeeper::alloc {

struct StackCache;

enum class ThreadStatus : uint8_t { kUnregistered = 0, kActive = 1, kExited = 2 };

// A thread inside one of the blocking calls heapkeeper wraps (collector/blocking_call.h). A scan
// leaves such a thread in its call instead of interrupting it, and uses what was saved here.
struct BlockingCallRecord {
  std::atomic<uint32_t> state{0};  // collect::BlockingState
  uint32_t depth = 0;              // nested calls (a signal handler's inside the program's)
  uint32_t kind = 0;               // collect::BlockingKind: which system calls it may be blocked in
  uint64_t registers[7] = {};      // callee-saved registers and the stack pointer at the call
};

struct alignas(64) ThreadState {
  // Written by the owner only; read by anyone.
  std::atomic<uint64_t> allocations{0};
  std::atomic<uint64_t> frees{0};
  std::atomic<uint64_t> allocated_bytes{0};
  std::atomic<uint64_t> freed_bytes{0};
  int64_t unflushed_live_bytes = 0;  // owner only

  uint32_t index = 0;          // heapkeeper's thread number (1 = first thread), saturating
  unsigned arena = 0;          // tracked jemalloc arena this thread allocates from
  uint64_t sequence_next = 0;  // allocation sequence numbers reserved by this thread
  uint64_t sequence_end = 0;
  StackCache* stack_cache = nullptr;

  // Read by the collector to find roots; set at registration.
  pid_t tid = 0;
  pthread_t handle{};
  uintptr_t stack_low = 0, stack_high = 0;

  bool heapkeeper_thread = false;  // heapkeeper's own threads: never stopped, never roots
  // A thread of heapkeeper's: the last program credentials it took (thread_credentials.h).
  std::atomic<uint32_t> credentials_followed{0};
  // A thread of heapkeeper's in a long task (a scan), which takes shared credentials when it ends.
  std::atomic<bool> busy{false};
  // A thread of heapkeeper's inside one of its waits, where it touches no jemalloc (quiet_fork.h).
  std::atomic<bool> parked{false};
  BlockingCallRecord blocking_call;
  // glibc allocated this thread's stack (not pthread_attr_setstack) and keeps it when the thread
  // exits: its stack is then recorded in exited_stacks(). Set by the pthread_create wrapper.
  bool library_stack = false;
  // A stack of heapkeeper's own for unwinding when the thread runs on a stack whose room is not
  // known (private_stack.h): made at first need, kept with this record for the threads that reuse it.
  void* private_stack = nullptr;
  bool private_stack_busy = false;

  std::atomic<bool> in_use{false};
  ThreadState* next_in_registry = nullptr;  // all states ever created, never unlinked
};

struct ThreadLocal {
  uint32_t guard = 0;  // reentrancy depth: non-zero while heapkeeper itself runs on this thread
  // Where this thread's stack stood when an allocation or free call of the program's took the
  // outermost guard (engine.cpp's CallGuardScope; 0 when other code took it): an allocation that
  // arrives under that guard from a signal handler is the program's, told apart from heapkeeper's
  // own nested ones by engine.cpp's allocation_from_interrupting_handler.
  uintptr_t guard_sp = 0;
  // Where heapkeeper's own code last took the guard (take_guard), and the depth that made (0 once
  // that level is released): an allocation under it that arrives inside a signal handler is
  // heapkeeper's (its fork handlers' inside a handler's fork), not the handler's, though the
  // handler interrupted a program call.
  uintptr_t internal_sp = 0;
  uint32_t internal_level = 0;
  uint32_t in_jemalloc = 0;  // non-zero while this thread is inside a call into jemalloc
  // Frees that arrived while inside jemalloc (signal handlers): done at the next top-level call.
  static constexpr uint32_t kDeferredFrees = 32;
  std::atomic<uint32_t> deferred_count{0};
  void* deferred[kDeferredFrees] = {};
  ThreadStatus status = ThreadStatus::kUnregistered;
  uint8_t exit_rounds = 0;  // pthread-key destructor rounds seen by heapkeeper's key at thread exit
  // jemalloc's per-thread state, taken off its pthread key at registration: torn down by
  // heapkeeper's last destructor round.
  void* jemalloc_thread_data = nullptr;
  ThreadState* state = nullptr;
  // Frame of the exported allocation function this thread is in (see EntryFrameScope); 0: none.
  uintptr_t entry_frame = 0;
  // The alternate signal stack the program set for this thread through sigaltstack() (the
  // wrapper records it; a fork's child inherits it with this copy): [low, high), 0 when none.
  uintptr_t alt_stack_low = 0, alt_stack_high = 0;
  // Set from heapkeeper's fork-prepare handler to its fork-parent or fork-child one. That prepare
  // handler runs before jemalloc's (registered after it), and its parent and child handlers after
  // jemalloc's: while set, this thread may hold every jemalloc lock, and what runs on it (a signal
  // handler that interrupted the fork) must neither start a thread nor wait for the fork to end.
  bool forking = false;
};

// Initial-exec TLS: one fixed offset from the thread pointer, no __tls_get_addr, no allocation.
// constinit tells every file that reads it that there is no dynamic initialiser to run first;
// without it each access from another file goes through a TLS wrapper call check.
extern constinit thread_local ThreadLocal tls_thread __attribute__((tls_model("initial-exec")));

// Takes heapkeeper's guard on this thread (release it with release_guard) for code other than an
// allocation or free call's (ThreadLocal::guard_sp).
__attribute__((always_inline)) inline void take_guard(ThreadLocal& tl) {
  if (tl.guard++ == 0) tl.guard_sp = 0;
  tl.internal_sp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  tl.internal_level = tl.guard;
}
// Releases one level of the guard; the record of heapkeeper's last take goes with the level that
// made it (a stale one sent a later handler's block untracked where its frames lay below it).
__attribute__((always_inline)) inline void release_guard(ThreadLocal& tl) {
  if (tl.internal_level >= tl.guard) tl.internal_level = 0;
  --tl.guard;
}

struct ThreadTotals {
  uint64_t allocations = 0, frees = 0, allocated_bytes = 0, freed_bytes = 0;
  uint64_t live_threads = 0, threads_seen = 0;
};

struct ThreadInfo {  // what reports say about thread number N
  pid_t tid;
  char name[16];
};

class ThreadRegistry {
 public:
  static constexpr uint32_t kTrackedInfos = 16384;

  bool initialize();
  // Registers the calling thread (guard held). Never fails: falls back to the exited path.
  // `heapkeeper_thread`: one of heapkeeper's own threads, which never allocates from a tracked
  // arena (its guard is held for its whole life): it shares the first one rather than making one.
  // `counted`: a program thread its creator counted already (expect_program_thread).
  ThreadState* register_current(bool heapkeeper_thread = false, bool counted = false);
  // A program thread about to be made, counted as live from now (the creator's side of
  // pthread_create), and the count given back when pthread_create fails.
  void expect_program_thread();
  void forget_expected_program_thread();
  int32_t live_program_threads() const { return live_program_threads_.load(std::memory_order_acquire); }
  // Called by the pthread-key destructor at thread exit: true while the thread must stay registered
  // for later destructor rounds (the key is re-armed), false once it is retired, or once it is found
  // to be the last of the program's threads (`last_program_thread`, left registered: the caller
  // ends the process as glibc would have without heapkeeper's threads).
  bool on_exit_round(bool& last_program_thread);
  // Retires the calling thread's state (its counters go to the retired totals).
  void retire_current();
  // Sums every thread's counters plus the retired totals.
  ThreadTotals totals() const;
  // Forwards a thread's unflushed live-byte change to the global total and peak.
  void flush_live_bytes(ThreadState& state);
  int64_t global_live_bytes() const { return live_bytes_.load(std::memory_order_relaxed); }
  uint64_t peak_live_bytes() const;
  // For frees and allocations that arrive on a thread after its state was retired.
  void count_orphan_allocation(size_t bytes);
  void count_orphan_free(size_t bytes);
  // Bytes added to a live block (its usable size was claimed), no new allocation.
  void count_orphan_bytes(size_t bytes);
  uint64_t next_sequence_block(uint64_t count) {
    return sequences_taken_.fetch_add(count, std::memory_order_relaxed) + 1;
  }

  const ThreadInfo* info(uint32_t index) const;
  // Reads a live thread's name again from /proc/self/task/TID/comm. A thread's name is first read
  // when it registers (at its first allocation, or as it starts), but programs name their threads
  // when they like: pthread_setname_np after pthread_create, or later. Not for the hot path (three
  // system calls): the publisher calls it for each thread it reports, the exit report for the
  // threads it names; a thread's last name is read as it exits.
  void refresh_name(const ThreadState& s);
  // Visits every active thread's state (for the collector and the publisher).
  template <typename Visitor>
  void for_each_active(Visitor&& visit) const {
    for (ThreadState* s = head_.load(std::memory_order_acquire); s != nullptr; s = s->next_in_registry) {
      if (s->in_use.load(std::memory_order_acquire)) visit(*s);
    }
  }
  // Whether task `tid` is one of heapkeeper's own registered threads.
  bool is_heapkeeper_thread(pid_t tid) const {
    bool own = false;
    for_each_active([&](const ThreadState& s) { own = own || (s.tid == tid && s.heapkeeper_thread); });
    return own;
  }
  // In a forked child: only the calling thread survives.
  void after_fork_in_child();

 private:
  ThreadState* take_state();

  std::atomic<ThreadState*> head_{nullptr};
  // Every member starts at zero, so that the registry (its 320 KiB of thread infos above all) lies in
  // .bss: demand-zero pages, of which a process touches only the few it writes. One non-zero
  // initialiser put the whole object in .data, read from the library's file, and the kernel's
  // fault-around then mapped 88 KiB of it around the first read (issue #12).
  std::atomic<uint32_t> indices_taken_{0};    // thread numbers handed out; the next is this + 1
  std::atomic<uint64_t> sequences_taken_{0};  // allocation sequence numbers handed out (from 1)
  std::atomic<int64_t> live_bytes_{0};
  // The program's threads registered and not yet exited (heapkeeper's own are not counted).
  std::atomic<int32_t> live_program_threads_{0};
  mutable std::atomic<int64_t> peak_bytes_{0};
  std::atomic<uint64_t> retired_allocations_{0}, retired_frees_{0}, retired_allocated_bytes_{0},
      retired_freed_bytes_{0};
  pthread_key_t exit_key_{};
  ThreadInfo infos_[kTrackedInfos] = {};
};

ThreadRegistry& thread_registry();

}  // namespace heapkeeper::alloc
