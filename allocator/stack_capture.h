// Capturing the allocation stack of the calling thread and interning it.
//
// libunwind walks the stack (its x86-64 fast trace); heapkeeper's own frames are dropped from the
// bottom so a stack starts at the program's call to malloc/new. A per-thread cache of validated
// recent stacks (stack_capture.cpp explains why validation is sound) makes the common case a
// handful of loads instead of an unwind.
#pragma once

#include <atomic>
#include <cstdint>

namespace heapkeeper::alloc {

struct StackCache;

StackCache* create_stack_cache();
void reset_stack_cache(StackCache* cache, uintptr_t stack_low, uintptr_t stack_high);

// Learns the address range of libheapkeeper.so itself and where libunwind's code is. Guard held.
bool initialize_stack_capture();

// libunwind's set-up (its own initialisation, and the per-thread cache policy), made at the
// process's first unwind rather than at start: a process that never captures a stack, as most
// short processes of a build or a shell loop (/bin/true), never pays for it (about 160 KiB of peak
// RSS: libunwind's code and the pages its initialisation clears; issue #12). Every unwind of
// heapkeeper's calls this first.
extern std::atomic<bool> g_unwinder_prepared;
void prepare_unwinder_slow();
inline void prepare_unwinder() {
  if (__builtin_expect(!g_unwinder_prepared.load(std::memory_order_acquire), 0)) prepare_unwinder_slow();
}
// For the program's dlsym and dlvsym of `name`: libunwind is set up before the program can get
// one of its functions (initialize_stack_capture says why).
void prepare_unwinder_for_lookup(const char* name) noexcept;

// Where the calling program frame's stacks sit in a cache: found once per allocation.
struct StackProbe {
  uintptr_t ip = 0, sp = 0;  // the program frame that called into heapkeeper; sp 0: not found
  uintptr_t rbp = 0;         // the program's frame pointer register at that call
  uint64_t tag = 0;
  uint64_t key = 0;  // what the cache's ways are tagged with: the tag and the first callers' words
  unsigned set = 0;
};

// Locates the caller in `cache` (which must be non-null) and starts loading the cache lines
// capture_stack will probe, so they arrive while jemalloc serves the block. Changes nothing.
StackProbe probe_stack_cache(StackCache* cache);

// Returns the interned id of the caller's stack, at most `depth` frames. `cache` may be null;
// `probe`, when given, is probe_stack_cache(cache) taken since the last capture on this thread.
uint32_t capture_stack(StackCache* cache, int depth, const StackProbe* probe = nullptr);

// Only the program frame that called into heapkeeper, as a one-frame stack: cheap enough for
// every free (HEAPKEEPER_FREE_STACKS=0, the default).
uint32_t capture_caller(StackCache* cache);

// The program's caller of the exported function this thread is in (its entry frame, within
// [frame, frame + 64 KiB) of the calling function's frame), interned as a one-frame stack, with no
// cache of the thread's touched: for a signal handler's allocation that interrupted heapkeeper's
// code, which may be updating those caches. 0 when it cannot be found. Lock-free.
uint32_t intern_caller_without_caches(uintptr_t frame);

// The executable segments of the loaded module holding `address`, from the lowest to the end of
// the highest; empty (0, 0) when no module holds it.
struct CodeRange {
  uintptr_t low = 0, high = 0;
};
CodeRange code_range_of(uintptr_t address);

// True when `address` is code of libheapkeeper.so (used to skip our frames, and by reports).
bool is_heapkeeper_code(uintptr_t address);

// Whether the stack words in [low, high), one stack's, hold the signal frame of a handler that
// interrupted code running at most at `high`: glibc's restorer's address, or a handler's own with
// the interrupted instruction in heapkeeper's code, then a ucontext whose saved stack pointer lies
// above the frame and at most at `high`. Reads up to `readable_end` (>= high) for the frame's
// context. Async-signal-safe; false while libc's code range is unknown (before start-up).
bool signal_frame_between(uintptr_t low, uintptr_t high, uintptr_t readable_end);

}  // namespace heapkeeper::alloc
