// The engine core: tracked allocation and free, the reentrancy and bootstrap paths, start-up.
//
// Hot path of a tracked malloc: one TLS read (guard and thread state), jemalloc's own fast path
// from the thread's tracked arena, a stack capture through the per-thread cache, a 16-byte header
// store (in front of the block, or out of band for whole-page regions: one table lookup decides),
// the block-map update (a bit set, usually no page-map write) and owner-only counter stores. No
// lock, no syscall, nothing allocated from the tracked heap.
//
// Calls made while the guard is held — heapkeeper's own code, libc functions called from inside a
// hook, signal handlers that interrupt a hook — go to the internal arena instead: never tracked,
// never reported, and on different jemalloc locks than the interrupted tracked call.
#include "allocator/engine.h"

#include <dlfcn.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "allocator/address_reservation.h"
#include "allocator/block_header.h"
#include "allocator/block_map.h"
#include "allocator/bootstrap_pool.h"
#include "allocator/config.h"
#include "allocator/diagnostics.h"
#include "allocator/engine_internal.h"
#include "allocator/errno_kept.h"
#include "allocator/heap_trimmer.h"
#include "allocator/jemalloc_calls.h"
#include "allocator/monotonic_clock.h"
#include "allocator/private_heap.h"
#include "allocator/private_stack.h"
#include "allocator/quarantine.h"
#include "allocator/quiet_fork.h"
#include "allocator/raw_syscall.h"
#include "allocator/signal_safe_pool.h"
#include "allocator/stack_capture.h"
#include "allocator/stack_table.h"
#include "allocator/syscall_filter.h"
#include "allocator/thread_credentials.h"
#include "allocator/thread_registry.h"
#include "allocator/unloaded_modules.h"
#include "allocator/unwinder_masks.h"

namespace heapkeeper::alloc {

std::atomic<uint32_t> g_deferred_thread_count{0};

namespace {

enum class InitState : int { kNotStarted = 0, kRunning = 1, kReady = 2, kFailed = 3 };
std::atomic<int> g_init_state{0};
bool g_ready = false;  // plain copy of kReady for the hot path; written once before threads exist
pthread_t g_init_thread{};

std::atomic<uint64_t> g_foreign_frees{0};
std::atomic<bool> g_foreign_warned{false};

constexpr int kForkChildHandlersMax = 8;
ForkChildHandler g_fork_child_handlers[kForkChildHandlersMax] = {};
std::atomic<int> g_fork_child_handler_count{0};

constexpr int kExitHandlersMax = 8;
ExitHandler g_exit_handlers[kExitHandlersMax] = {};
std::atomic<int> g_exit_handler_count{0};

// A thread waiting to be started (start_internal_thread_later). Written only while its state is
// kFilling; started by whichever caller moves it from kWaiting to kStarting.
struct DeferredThread {
  enum : uint32_t { kEmpty, kFilling, kWaiting, kStarting };
  std::atomic<uint32_t> state{kEmpty};
  void (*routine)() = nullptr;
  const char* failure = nullptr;
  uint64_t due_ns = 0;  // CLOCK_MONOTONIC
  char name[16] = {};
};
constexpr unsigned kMaxDeferredThreads = 4;
DeferredThread g_deferred_threads[kMaxDeferredThreads];
std::atomic<bool> g_threads_closed{false};  // the exit handlers began: start nothing more

// A forked child starts with none: what its parent deferred is the parent's (the fork-child
// handlers defer the child's own), and an entry caught mid-start by the fork would never finish.
void forget_deferred_threads() {
  for (DeferredThread& deferred : g_deferred_threads)
    deferred.state.store(DeferredThread::kEmpty, std::memory_order_relaxed);
  g_deferred_thread_count.store(0, std::memory_order_relaxed);
}

// heapkeeper's guard for a scope. The guard of an allocation or free call of the program's
// (`program_call`) notes, when outermost, where the stack stands (ThreadLocal::guard_sp).
class GuardScope {
 public:
  explicit GuardScope(ThreadLocal& tl, bool program_call = false) : tl_(tl), program_call_(program_call) {
    if (!program_call) {
      take_guard(tl_);
    } else if (tl_.guard++ == 0) {
      tl_.guard_sp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
    }
  }
  // A program call's level never holds heapkeeper's record (takes inside it release their own):
  // the allocation path's plain decrement.
  ~GuardScope() {
    if (program_call_) {
      --tl_.guard;
    } else {
      release_guard(tl_);
    }
  }
  GuardScope(const GuardScope&) = delete;
  GuardScope& operator=(const GuardScope&) = delete;

 private:
  ThreadLocal& tl_;
  bool program_call_;
};

inline unsigned log2_of_power(size_t value) { return static_cast<unsigned>(__builtin_ctzll(value)); }

// Usable size and slab class of a freshly returned region: from the placement when it knows the
// class (plain requests), else from jemalloc.
inline void region_geometry(uintptr_t region, const BlockPlacement& placement, size_t& usable, int& small_class) {
  const PrivateHeap& heap = private_heap();
  if (placement.small_class >= 0) {
    usable = heap.small_class_size(static_cast<unsigned>(placement.small_class));
    small_class = placement.small_class;
    return;
  }
  usable = je::sallocx(reinterpret_cast<void*>(region), 0);
  small_class = usable <= heap.small_max() ? heap.small_class_of_usable(usable) : -1;
}

inline uint32_t next_sequence(ThreadState* s) {
  if (s == nullptr) return static_cast<uint32_t>(thread_registry().next_sequence_block(1));
  if (s->sequence_next == s->sequence_end) {
    constexpr uint64_t kBlock = 4096;
    s->sequence_next = thread_registry().next_sequence_block(kBlock);
    s->sequence_end = s->sequence_next + kBlock;
    // A program that computes without ever waiting in a wrapped call still gets its deferred
    // threads (live stats) once they are due: checked here, every 4096 allocations of a thread.
    start_deferred_threads(false);
  }
  return static_cast<uint32_t>(s->sequence_next++);
}

inline void count_allocation(ThreadState* s, size_t size) {
  if (s == nullptr) {
    thread_registry().count_orphan_allocation(size);
    return;
  }
  s->allocations.store(s->allocations.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  s->allocated_bytes.store(s->allocated_bytes.load(std::memory_order_relaxed) + size, std::memory_order_relaxed);
  s->unflushed_live_bytes += static_cast<int64_t>(size);
  if (s->unflushed_live_bytes > kLiveFlushStep) {
    thread_registry().flush_live_bytes(*s);
    note_memory_freed(s->freed_bytes.load(std::memory_order_relaxed));
  }
}

inline void count_free(ThreadState* s, size_t size) {
  if (s == nullptr) {
    thread_registry().count_orphan_free(size);
    return;
  }
  s->frees.store(s->frees.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  s->freed_bytes.store(s->freed_bytes.load(std::memory_order_relaxed) + size, std::memory_order_relaxed);
  s->unflushed_live_bytes -= static_cast<int64_t>(size);
  if (s->unflushed_live_bytes < -kLiveFlushStep) {
    thread_registry().flush_live_bytes(*s);
    note_memory_freed(s->freed_bytes.load(std::memory_order_relaxed));
  }
}

inline ThreadState* current_state(ThreadLocal& tl) {
  if (__builtin_expect(tl.state != nullptr, 1)) return tl.state;
  if (tl.status == ThreadStatus::kUnregistered) return thread_registry().register_current();
  return nullptr;  // exited thread: the purgatory path
}

// The last line of defence between heapkeeper's layers and the program: handlers run from exit(),
// a fork child or an internal thread, where an escaping C++ exception would be std::terminate,
// the program's abort. Each layer catches its own failures with a precise message; this only says
// which hook failed and lets the others run.
template <typename Handler>
void run_without_throwing(Handler handler, const char* what) noexcept {
  try {
    handler();
  } catch (const std::exception& error) {
    DiagnosticLine().text(what).text(" failed: ").text(error.what()).emit();
  } catch (...) {
    DiagnosticLine().text(what).text(" failed").emit();
  }
}

// The process heapkeeper started in, or the fork child it became (fork_child).
std::atomic<pid_t> g_process_pid{0};
// This image's first process: a fork child has another pid (a vfork child too), an exec a new image.
std::atomic<pid_t> g_image_pid{0};

void run_exit_handlers() {
  // exit() in a child that shares this process's memory without being its thread (clone with
  // CLONE_VM): the handlers are the process's, in memory the child shares; run there they ended
  // its live stats and took its exit scan, and the process itself went on without scans or report
  // (an adversarial round, helper-62). Not the process's exit: nothing to do.
  // Asked only without a seccomp filter, which may kill for kcmp (a debugging call); under one, a
  // process whose pid is not the one heapkeeper started in (or forked into) is taken to share the
  // memory: a vfork child calling exit(), or a raw clone's.
  const auto self = static_cast<pid_t>(raw_syscall(SYS_getpid));
  const pid_t owner = g_process_pid.load(std::memory_order_acquire);
  if (owner != 0 && self != owner && memory_shared_with(owner) != MemorySharing::kNotShared) return;
  ThreadLocal& tl = tls_thread;
  GuardScope guard(tl);
  // A thread not started by now would only race the exit handlers (the publisher's final snapshot).
  g_threads_closed.store(true, std::memory_order_release);
  int count = g_exit_handler_count.load(std::memory_order_acquire);
  for (int i = 0; i < count; ++i) run_without_throwing(g_exit_handlers[i], "an exit handler");
}

// Run before jemalloc's fork handlers lock its arenas, and after they release them: no thread may
// be inside libunwind's critical sections when the fork copies the process (unwinder_masks.h).
void fork_prepare() {
  tls_thread.forking = true;
  begin_fork_for_unwinder();
}
void fork_parent() {
  end_fork_for_unwinder_in_parent();
  tls_thread.forking = false;
}
void fork_child() {
  end_fork_for_unwinder_in_child();
  tls_thread.forking = false;
  g_process_pid.store(static_cast<pid_t>(raw_syscall(SYS_getpid)), std::memory_order_release);
  ThreadLocal& tl = tls_thread;
  GuardScope guard(tl);
  diagnostic_output_after_fork_in_child();
  thread_registry().after_fork_in_child();
  thread_credentials_after_fork_in_child();
  unloaded_modules_after_fork();
  heap_trimmer_after_fork();
  private_heap().after_fork_in_child();
  forget_deferred_threads();
  int count = g_fork_child_handler_count.load(std::memory_order_acquire);
  for (int i = 0; i < count; ++i) run_without_throwing(g_fork_child_handlers[i], "a fork-child handler");
}

}  // namespace

// jemalloc's fork handlers. Its boot registers them with pthread_atfork, which the build renames in
// jemalloc's objects to hk_je_pthread_atfork (cmake/PrivateJemalloc.cmake): heapkeeper keeps them
// and runs them from its own handlers, in fork()'s order, unless the fork is quiet (quiet_fork.h).
namespace {
using ForkHandler = void (*)();
ForkHandler g_jemalloc_prefork = nullptr, g_jemalloc_postfork_parent = nullptr, g_jemalloc_postfork_child = nullptr;
// How deep in forks this thread is, and whether the outermost leaves jemalloc's handlers out. A
// signal handler that interrupted a fork may fork again: only an outermost fork is quiet.
constinit thread_local uint32_t tls_fork_depth __attribute__((tls_model("initial-exec"))) = 0;
constinit thread_local bool tls_fork_quiet __attribute__((tls_model("initial-exec"))) = false;
// Which of this thread's forks in progress (bit d: the fork at depth d) ran jemalloc's prepare
// handler, and so hold its locks until their parent or child handler.
constinit thread_local uint64_t tls_fork_locked_jemalloc __attribute__((tls_model("initial-exec"))) = 0;

// What the fork whose parent or child handler runs now did before it.
struct EndingFork {
  bool quiet;            // jemalloc's handlers were left out, every other thread parked (quiet_fork.h)
  bool locked_jemalloc;  // jemalloc's prepare handler ran
};
EndingFork ending_fork() {
  if (tls_fork_depth == 0) return {false, false};
  const uint32_t depth = --tls_fork_depth;
  const uint64_t bit = depth < 64 ? uint64_t{1} << depth : 0;
  const bool locked = (tls_fork_locked_jemalloc & bit) != 0;
  tls_fork_locked_jemalloc &= ~bit;
  return {depth == 0 && tls_fork_quiet, locked};
}

}  // namespace

extern "C" int hk_je_pthread_atfork(void (*prepare)(), void (*parent)(), void (*child)()) {
  g_jemalloc_prefork = prepare;
  g_jemalloc_postfork_parent = parent;
  g_jemalloc_postfork_child = child;
  return 0;
}

namespace {

// In the order fork() runs them: the prepare handlers registered later (the program's) before
// these, which may allocate, their parent and child handlers after (jemalloc works again).
//
// A fork from a signal handler that interrupted this thread inside jemalloc (the program's malloc
// or free, heapkeeper's own bookkeeping in its dlclose, or jemalloc's prepare handler of a fork
// this one interrupted) leaves the prepare handler out: it locks every one of jemalloc's mutexes,
// and waited for ever for the one the interrupted call holds (a SIGALRM handler forking while the
// program looped over dlopen, malloc, free and dlclose hung 6 runs in 6; fork is
// async-signal-safe, and the same program runs to its end without heapkeeper). The parent's
// jemalloc is then as the interrupted call left it, which goes on when the handler returns; the
// child's mutexes are all made anew by the child handler, whoever held them at the fork, and its
// heap may be mid-update, where such a child may only call async-signal-safe functions anyway
// until it execs or exits. From the prepare handler to the parent's or child's, this thread counts
// as inside jemalloc: a handler's allocation meanwhile is served without it (jemalloc_calls.h),
// where it waited for the locks the fork holds.
void prepare_for_fork() {
  fork_prepare();
  const uint32_t depth = tls_fork_depth++;
  const bool quiet = depth == 0 && begin_quiet_fork();
  if (depth == 0) tls_fork_quiet = quiet;
  if (quiet || tls_thread.in_jemalloc != 0 || g_jemalloc_prefork == nullptr || depth >= 64) return;
  tls_fork_locked_jemalloc |= uint64_t{1} << depth;
  ++tls_thread.in_jemalloc;
  g_jemalloc_prefork();
}
void after_fork_in_parent() {
  const EndingFork fork = ending_fork();
  if (fork.quiet) {
    end_quiet_fork_in_parent();
  } else if (fork.locked_jemalloc) {
    if (g_jemalloc_postfork_parent != nullptr) g_jemalloc_postfork_parent();
    --tls_thread.in_jemalloc;
  }
  fork_parent();
}
void after_fork_in_child() {
  const EndingFork fork = ending_fork();
  if (fork.quiet) {
    end_quiet_fork_in_child();
  } else if (g_jemalloc_postfork_child != nullptr) {
    // After a fork that left the prepare handler out too: every mutex is made anew.
    g_jemalloc_postfork_child();
  }
  if (fork.locked_jemalloc) --tls_thread.in_jemalloc;
  fork_child();
}

}  // namespace

bool prepare_raw_fork() noexcept {
  if (!g_ready) return false;
  prepare_for_fork();
  return true;
}
void after_raw_fork_in_parent() noexcept { after_fork_in_parent(); }
void after_raw_fork_in_child() noexcept { after_fork_in_child(); }

// ---------------------------------------------------------------------------------------------
// Start-up

bool is_initialized() noexcept { return g_ready; }

bool ensure_initialized() noexcept {
  int state = g_init_state.load(std::memory_order_acquire);
  if (state == static_cast<int>(InitState::kReady)) return true;
  if (state == static_cast<int>(InitState::kFailed)) return false;
  if (state == static_cast<int>(InitState::kRunning)) {
    // Recursion from inside start-up on this thread is served by the bootstrap pool; another thread
    // waits (start-up happens before main, so this is rare and short).
    if (pthread_equal(g_init_thread, pthread_self())) return false;
    while (g_init_state.load(std::memory_order_acquire) == static_cast<int>(InitState::kRunning)) sched_yield();
    return g_init_state.load(std::memory_order_acquire) == static_cast<int>(InitState::kReady);
  }
  int expected = static_cast<int>(InitState::kNotStarted);
  if (!g_init_state.compare_exchange_strong(expected, static_cast<int>(InitState::kRunning)))
    return ensure_initialized();
  g_init_thread = pthread_self();
  const ErrnoKept errno_kept;  // start-up may be the program's first malloc: its errno is the program's

  ThreadLocal& tl = tls_thread;
  GuardScope guard(tl);
  Config& cfg = mutable_config();
  load_config_from_environment(cfg);
  initialize_diagnostic_output();  // before the program can close its stderr
  bool ok = private_heap().initialize(cfg.heap_reserve_bytes, cfg.arenas) && block_map().initialize(private_heap()) &&
            stack_table().initialize(address_space_left()) && thread_registry().initialize() &&
            signal_safe_pool().initialize();
  if (!ok) {
    DiagnosticLine()
        .text(
            "could not set up the private heap (address space reservation or jemalloc arenas failed); "
            "allocations are untracked and served from a 1 MiB start-up pool until it runs out")
        .emit();
    g_init_state.store(static_cast<int>(InitState::kFailed), std::memory_order_release);
    return false;
  }
  // From here the internal arena works: anything start-up allocates below goes there.
  g_init_state.store(static_cast<int>(InitState::kReady), std::memory_order_release);
  initialize_stack_capture();
  pthread_atfork(prepare_for_fork, after_fork_in_parent, after_fork_in_child);
  g_process_pid.store(static_cast<pid_t>(raw_syscall(SYS_getpid)), std::memory_order_release);
  g_image_pid.store(g_process_pid.load(std::memory_order_relaxed), std::memory_order_release);
  atexit(run_exit_handlers);
  g_ready = true;
  thread_registry().register_current();
  return true;
}

ThreadState* current_thread_state() noexcept {
  if (!g_ready) return nullptr;
  ThreadLocal& tl = tls_thread;
  if (__builtin_expect(tl.state != nullptr, 1)) return tl.state;
  // Not registered yet, and called from a signal handler that interrupted heapkeeper on this thread
  // (its guard held, or inside jemalloc): the interrupted code may be this very registration, in
  // jemalloc with an arena's lock held (pthread_getattr_np's calloc), and registering again would
  // wait for that lock for ever. A SIGPROF handler calling read() while threads started hung or
  // crashed 26 runs in 30. The thread registers at its next call from outside heapkeeper.
  if (tl.guard != 0 || tl.in_jemalloc != 0) return nullptr;
  GuardScope guard(tl);
  return current_state(tl);
}

void set_stack_printer(StackPrinter printer) noexcept { set_bad_free_stack_printer(printer); }

void add_exit_handler(ExitHandler handler) noexcept {
  int index = g_exit_handler_count.load(std::memory_order_relaxed);
  if (index >= kExitHandlersMax) return;
  g_exit_handlers[index] = handler;
  g_exit_handler_count.store(index + 1, std::memory_order_release);
}

void add_fork_child_handler(ForkChildHandler handler) noexcept {
  int index = g_fork_child_handler_count.load(std::memory_order_relaxed);
  if (index >= kForkChildHandlersMax) return;
  g_fork_child_handlers[index] = handler;
  g_fork_child_handler_count.store(index + 1, std::memory_order_release);
}

uint64_t foreign_free_count() noexcept { return g_foreign_frees.load(std::memory_order_relaxed); }

// ---------------------------------------------------------------------------------------------
// Untracked paths

void* allocate_untracked(size_t size, size_t alignment, bool zero) noexcept {
  if (__builtin_expect(tls_thread.in_jemalloc != 0, 0)) return signal_safe_pool().allocate(size, alignment, zero);
  if (!g_ready) {
    if (!ensure_initialized() || tls_thread.guard > 0 || !g_ready) return bootstrap_pool().allocate(size, alignment);
  }
  int flags = MALLOCX_ARENA(private_heap().internal_arena()) | MALLOCX_TCACHE_NONE;
  if (alignment > 16) flags |= MALLOCX_LG_ALIGN(log2_of_power(alignment));
  if (zero) flags |= MALLOCX_ZERO;
  void* p = je::mallocx(size == 0 ? 1 : size, flags);
  // The internal arena can run out where the process may map no more (`ulimit -v`): heapkeeper's
  // own small allocations then come from what is left of the bootstrap pool, already mapped, so
  // that set-up, an exit scan's bookkeeping and the std::bad_alloc they may throw still get their
  // bytes (the exception's allocation failing called std::terminate: the program aborted).
  if (__builtin_expect(p == nullptr, 0)) p = bootstrap_pool().allocate(size, alignment);
  if (p == nullptr) errno = ENOMEM;
  return p;
}

// A free that arrives while this thread is inside jemalloc (a signal handler interrupting it) is
// finished later: the block is retired from the block map now, and its memory is handed back to
// jemalloc by the next call on this thread that is not inside jemalloc. If the list is full the
// memory is simply kept (a few bytes lost, never a corrupted allocator).
static void defer_free(ThreadLocal& tl, void* region) noexcept {
  const uint32_t count = tl.deferred_count.load(std::memory_order_relaxed);
  if (count >= ThreadLocal::kDeferredFrees) return;
  tl.deferred[count] = region;
  std::atomic_signal_fence(std::memory_order_release);
  tl.deferred_count.store(count + 1, std::memory_order_relaxed);
}

static void drain_deferred_frees(ThreadLocal& tl) noexcept {
  for (;;) {
    uint32_t count = tl.deferred_count.load(std::memory_order_relaxed);
    if (count == 0) return;
    void* region = tl.deferred[count - 1];
    std::atomic_signal_fence(std::memory_order_acquire);
    // A handler that pushed meanwhile changed the count: look again.
    if (!tl.deferred_count.compare_exchange_strong(count, count - 1, std::memory_order_relaxed)) continue;
    je::dallocx(region, MALLOCX_TCACHE_NONE);
  }
}

// A free of a signal-safe pool block, on any path: the block goes back to the pool for reuse. A
// double or invalid free is reported with stacks, or inside jemalloc (a handler interrupting it:
// no stacks or symbols there) in one line, and ignored.
static void free_pool_block(void* ptr, const char* api_name, bool inside_jemalloc) noexcept {
  const SignalSafePool::FreeResult result = signal_safe_pool().free(ptr);
  if (result == SignalSafePool::FreeResult::kFreed) return;
  const bool twice = result == SignalSafePool::FreeResult::kDoubleFree;
  if (!inside_jemalloc) {
    report_bad_free(ptr, twice ? BadFreeKind::kDouble : BadFreeKind::kInvalid, api_name);
    return;
  }
  DiagnosticLine()
      .text(twice ? "double free of " : "invalid free of ")
      .hex(reinterpret_cast<uintptr_t>(ptr))
      .text(" in a signal handler that interrupted the allocator; ignored")
      .emit();
}

static void free_inside_jemalloc(ThreadLocal& tl, void* ptr) noexcept {
  if (signal_safe_pool().contains(ptr)) {
    free_pool_block(ptr, "free", true);
    return;
  }
  if (bootstrap_pool().contains(ptr)) return;
  if (private_heap().internal().contains(ptr)) {
    defer_free(tl, ptr);
    return;
  }
  if (!private_heap().tracked().contains(ptr)) {
    g_foreign_frees.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const UserBlock block = block_of_user_pointer(reinterpret_cast<uintptr_t>(ptr));
  const uintptr_t region = block.region;
  BlockHeader* header = block.header;
  if (region == 0 || !block_map().retire(region)) {
    // No stacks or symbols here (they would need the allocator): one line, then on.
    DiagnosticLine()
        .text("invalid or double free of ")
        .hex(reinterpret_cast<uintptr_t>(ptr))
        .text(" in a signal handler that interrupted the allocator; ignored")
        .emit();
    return;
  }
  // No report here (no dladdr in a signal handler), but the block leaves quarantine: the next
  // block at this address must not inherit its bit.
  if (__builtin_expect(quarantine().active(), 0)) quarantine().release(region);
  const BlockHeader old = *header;
  header->packed = BlockHeader::pack(old.size(), old.offset_shift(), true, old.thread_index());
  header->sequence = 0;
  count_free(nullptr, old.size());
  defer_free(tl, reinterpret_cast<void*>(region));
}

static bool on_current_stack(const void* ptr) noexcept {
  const ThreadState* s = tls_thread.state;
  const auto address = reinterpret_cast<uintptr_t>(ptr);
  return s != nullptr && address >= s->stack_low && address < s->stack_high;
}

static void free_outside_tracked_heap(void* ptr) noexcept {
  if (private_heap().internal().contains(ptr)) {
    je::dallocx(ptr, MALLOCX_TCACHE_NONE);
    return;
  }
  if (signal_safe_pool().contains(ptr)) {
    free_pool_block(ptr, "free", false);
    return;
  }
  if (bootstrap_pool().contains(ptr)) return;  // never recycled
  if (on_current_stack(ptr)) {
    report_bad_free(ptr, BadFreeKind::kInvalid, "free");  // glibc aborts too: "free(): invalid pointer"
    return;
  }
  // Not ours: memory from before heapkeeper was loaded (ld.so's early allocator) or from another
  // allocator. Freeing it elsewhere could corrupt that allocator, so it is left alone and counted.
  if ((reinterpret_cast<uintptr_t>(ptr) & 7) != 0) {
    report_bad_free(ptr, BadFreeKind::kInvalid, "free");
    return;
  }
  g_foreign_frees.fetch_add(1, std::memory_order_relaxed);
  if (!g_foreign_warned.exchange(true, std::memory_order_relaxed) && g_ready) {
    DiagnosticLine()
        .text("free of ")
        .hex(reinterpret_cast<uintptr_t>(ptr))
        .text(", which heapkeeper did not allocate: left alone (counted as a foreign free; further ones are not shown)")
        .emit();
  }
}

// ---------------------------------------------------------------------------------------------
// Tracked allocation

// Writes the header of the block just taken at `region`, records it in the block map and counts it:
// on `counted`'s sequence and counters, or the process-wide ones when it is null. Returns the
// user's pointer. The header is written before the block is recorded: a scanner that sees the
// live bit (released by record) finds the header where the page map, written with it, says it is.
inline void* record_new_block(uintptr_t region, const BlockPlacement& placement, size_t size, uint32_t stack,
                              uint32_t thread_index, ThreadState* counted) noexcept {
  BlockHeader* header = placement.offset_shift == BlockHeader::kOutOfBandShift ? block_map().out_of_band_header(region)
                                                                               : in_band_header(region);
  header->packed = BlockHeader::pack(size, placement.offset_shift, false, thread_index);
  header->stack_id = stack;
  header->sequence = next_sequence(counted);
  stack_table().count_allocation(stack);
  size_t usable;
  int small_class;
  region_geometry(region, placement, usable, small_class);
  // The user's pointer is made before the block turns live and kept in a register or this frame
  // until it is returned: a scan that stops the thread in between must find it. The region alone
  // does not hold an in-band block (its header's address is also one past the end of the block
  // before, which a full region makes that block's): a thread stopped here for three scans, a slow
  // signal handler's, had its new block freed by collect mode and handed out again (an
  // adversarial round, helper-63), and detect mode's periodic scans called it leaked.
  uintptr_t user = region + header->user_offset();
  asm volatile("" : "+r"(user) : : "memory");
  block_map().record(region, usable, small_class);
  count_allocation(counted, size);
  asm volatile("" : : "r"(user) : "memory");
  return reinterpret_cast<void*>(user);
}

// Whether an allocation that arrives with the guard of an allocation or free call held is a signal
// handler's that interrupted that call (capturing a stack, recording a block), rather than one that
// heapkeeper's own code made through libc or libunwind. Such a handler's block is the program's:
// from the internal arena, which no scan reads, it hid the blocks it pointed to, which detect mode
// reported leaked and collect mode freed under the program (a handler appending nodes to a list).
// Told by a signal frame between this call and where the guard was taken, when both are on the
// thread's stack or both on its alternate signal stack; or by this call being on another stack than
// the guard's (heapkeeper's call moves only to its private stack, for an unwind on a coroutine's).
// When the guard was taken on a stack heapkeeper does not know (a coroutine's) and so is this call,
// nothing tells them apart: the block stays internal (README, "Limits").
static bool allocation_from_interrupting_handler(const ThreadLocal& tl) noexcept {
  const auto here = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  const uintptr_t guard_sp = tl.guard_sp;
  const ThreadState* s = tl.state;
  if (guard_sp == 0 || s == nullptr || on_private_stack(*s, here)) return false;
  // 0: neither of the known stacks; 1: the thread's; 2: its alternate signal stack.
  const auto which_stack = [&](uintptr_t address) {
    if (address >= s->stack_low && address < s->stack_high) return 1;
    if (address >= tl.alt_stack_low && address < tl.alt_stack_high) return 2;
    return 0;
  };
  const int guard_stack = which_stack(guard_sp), this_stack = which_stack(here);
  const uintptr_t high = this_stack == 1 ? s->stack_high : tl.alt_stack_high;
  // Whether a take of the guard at `sp` lies inside this very handler: on its stack, at or above
  // `here` (a tail call gives the taker's frame to the allocation), below no signal frame that
  // `here` is not also below (a take in a handler that this one interrupted is that one's), and
  // past a signal frame from the interrupted call.
  const auto inside_handler = [&](uintptr_t sp) {
    if (which_stack(sp) != this_stack || sp < here) return false;
    if (sp > here && signal_frame_between(here, sp, high)) return false;
    if (this_stack != guard_stack) return true;
    return sp < guard_sp && signal_frame_between(sp, guard_sp, high);
  };
  bool handler;
  if (guard_stack == 0) {
    handler = this_stack != 0;
  } else if (this_stack != guard_stack) {
    handler = true;
  } else {
    // Both on one stack: the words between are in use, the interrupted code's and the handler's.
    handler = here < guard_sp && signal_frame_between(here, guard_sp, high);
  }
  // heapkeeper's own code inside the handler holds the guard it took there (its fork handlers,
  // when the handler forks: the collector's state made at the first fork was taken for the
  // handler's block, in the tracked heap with no stack, and reported as leaked at exit).
  if (handler && tl.internal_level != 0 && tl.internal_level <= tl.guard && this_stack != 0 &&
      inside_handler(tl.internal_sp))
    return false;
  return handler;
}

// A signal handler's block, made while the allocation or free call it interrupted holds the guard:
// tracked like any block, so that scans read it and its free gives its memory back (from the
// signal-safe pool, which never reuses, a handler allocating and freeing under a 100 us timer used
// up the pool's 256 MiB in 6 s, and malloc failed from then on: an adversarial round, helper-62).
// None of the thread's caches and counters is touched, which the interrupted call may be updating:
// jemalloc without the thread cache, the caller alone as the stack (interned lock-free), the
// process-wide counters.
static void* allocate_for_interrupting_handler(ThreadLocal& tl, size_t size, size_t alignment, bool zero) noexcept {
  const bool plain = alignment <= 16;
  if (size > static_cast<size_t>(PTRDIFF_MAX) - (plain ? kHeaderSize : alignment) - kPageSize) {
    errno = ENOMEM;
    return nullptr;
  }
  const PrivateHeap& heap = private_heap();
  const BlockPlacement placement = plain ? heap.place_plain(size) : heap.place_aligned(size, alignment);
  ThreadState* s = tl.state;
  int flags = MALLOCX_ARENA(s != nullptr ? s->arena : heap.tracked_arena_for(0)) | MALLOCX_TCACHE_NONE;
  if (!plain) flags |= MALLOCX_LG_ALIGN(log2_of_power(alignment));
  if (zero) flags |= MALLOCX_ZERO;
  void* raw = je::mallocx(placement.request, flags);
  if (raw == nullptr) return signal_safe_pool().allocate(size, alignment, zero);
  if (!heap.tracked().contains(raw)) return raw;  // as allocate_tracked says
  const uint32_t stack = intern_caller_without_caches(reinterpret_cast<uintptr_t>(__builtin_frame_address(0)));
  // No thread state: the process-wide sequence and counters.
  return record_new_block(reinterpret_cast<uintptr_t>(raw), placement, size, stack, s != nullptr ? s->index : 0,
                          nullptr);
}

void* allocate_tracked(size_t size, size_t alignment, bool zero) noexcept {
  ThreadLocal& tl = tls_thread;
  if (__builtin_expect(tl.guard != 0 || !g_ready, 0)) {
    // A signal handler's, interrupting an allocation or free call: the program's block.
    if (tl.guard != 0 && tl.in_jemalloc == 0 && g_ready && allocation_from_interrupting_handler(tl)) {
      const int saved_errno = errno;
      GuardScope guard(tl);
      void* block = allocate_for_interrupting_handler(tl, size, alignment, zero);
      if (block != nullptr) errno = saved_errno;
      return block;
    }
    // Before start-up the program's first allocation brings the heap up and is then tracked like
    // any other: it may come from another preloaded library's constructor, run before ours.
    if (tl.guard != 0 || tl.in_jemalloc != 0 || !ensure_initialized() || !g_ready)
      return allocate_untracked(size, alignment, zero);
  }
  if (__builtin_expect(tl.in_jemalloc != 0, 0)) return signal_safe_pool().allocate(size, alignment, zero);
  if (__builtin_expect(tl.deferred_count.load(std::memory_order_relaxed) != 0, 0)) drain_deferred_frees(tl);
  const int saved_errno = errno;
  GuardScope guard(tl, true);
  ThreadState* s = current_state(tl);

  const bool plain = alignment <= 16;
  if (__builtin_expect(size > static_cast<size_t>(PTRDIFF_MAX) - (plain ? kHeaderSize : alignment) - kPageSize, 0)) {
    errno = ENOMEM;
    return nullptr;
  }
  const PrivateHeap& heap = private_heap();
  const BlockPlacement placement = plain ? heap.place_plain(size) : heap.place_aligned(size, alignment);
  StackProbe probe;
  if (__builtin_expect(s != nullptr && s->stack_cache != nullptr, 1)) probe = probe_stack_cache(s->stack_cache);
  void* raw;
  if (__builtin_expect(plain && s != nullptr, 1)) {
    raw = zero ? je::calloc(1, placement.request) : je::malloc(placement.request);
  } else {
    // Aligned, or a thread whose state is gone: name the arena explicitly and skip the tcache,
    // whose owner may already have torn it down.
    int flags = MALLOCX_ARENA(s != nullptr ? s->arena : heap.tracked_arena_for(0));
    if (s == nullptr) flags |= MALLOCX_TCACHE_NONE;
    if (!plain) flags |= MALLOCX_LG_ALIGN(log2_of_power(alignment));
    if (zero) flags |= MALLOCX_ZERO;
    raw = je::mallocx(placement.request, flags);
  }
  if (__builtin_expect(raw == nullptr, 0)) {
    // The reservation is exhausted, or what is left of it is too fragmented. Memory freed
    // recently and not yet trimmed may lie in pieces too small for this request (unused slabs
    // coalesce only once purged): purge it, which coalesces it, and try once more.
    if (purge_unused_memory()) {
      int flags = MALLOCX_ARENA(s != nullptr ? s->arena : heap.tracked_arena_for(0)) | MALLOCX_TCACHE_NONE;
      if (!plain) flags |= MALLOCX_LG_ALIGN(log2_of_power(alignment));
      if (zero) flags |= MALLOCX_ZERO;
      raw = je::mallocx(placement.request, flags);
    }
    if (raw == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
  }
  if (__builtin_expect(!heap.tracked().contains(raw), 0)) {
    // After jemalloc has torn down a thread's state (pthread-key destructors that run after its
    // own), it serves even explicit-arena requests from arena 0, whose memory is internal. Such a
    // block is served untracked rather than recorded outside the heap; free routes it by address.
    // (`raw` is already aligned as asked and at least `size` bytes long.)
    return raw;
  }
  const uint32_t stack = capture_stack(s != nullptr ? s->stack_cache : nullptr, config().stack_depth, &probe);
  void* block =
      record_new_block(reinterpret_cast<uintptr_t>(raw), placement, size, stack, s != nullptr ? s->index : 0, s);
  errno = saved_errno;
  return block;
}

// Finds the tracked block whose user pointer is `ptr`: its region and header; region 0 if none.
UserBlock block_of_user_pointer(uintptr_t ptr) noexcept {
  const BlockMap& map = block_map();
  // Most blocks: a plain in-band block, header 16 bytes in front. A region that starts a page may
  // instead be a whole-page block whose first bytes are the program's, not a header.
  const uintptr_t candidate = ptr - kHeaderSize;
  if ((ptr & 15) == 0 && map.is_live(candidate) &&
      ((candidate & (kPageSize - 1)) != 0 || !map.has_out_of_band_header(candidate))) {
    BlockHeader* header = in_band_header(candidate);
    if (header->user_offset() == kHeaderSize) return {candidate, header};
  }
  // A whole-page block: the user pointer is the region, which starts a page.
  if ((ptr & (kPageSize - 1)) == 0 && map.is_live(ptr) && map.has_out_of_band_header(ptr))
    return {ptr, map.out_of_band_header(ptr)};
  // Aligned blocks keep their header further in front; find the region the slow way.
  const uintptr_t region = map.find_region(ptr);
  if (region == 0) return {0, nullptr};
  BlockHeader* header = map.header(region);
  if (region + header->user_offset() != ptr) return {0, nullptr};
  return {region, header};
}

static void release_region(ThreadState* s, uintptr_t region, const BlockHeader& header) noexcept {
  void* memory = reinterpret_cast<void*>(region);
  if (header.out_of_band()) {
    // The request was the size, or the size plus a header's worth, aligned or not: jemalloc finds
    // the region's size itself (a lookup it would do for an unsized free anyway).
    je::dallocx(memory, s == nullptr ? MALLOCX_TCACHE_NONE : 0);
    return;
  }
  const size_t total = header.size() + header.user_offset() + (header.size() == 0 ? 1 : 0);
  if (s == nullptr) {
    je::dallocx(memory, MALLOCX_TCACHE_NONE);
  } else if (header.user_offset() == kHeaderSize) {
    je::sdallocx(memory, total, 0);
  } else {
    je::sdallocx(memory, total, MALLOCX_LG_ALIGN(header.offset_shift()));
  }
}

void free_tracked(void* ptr, const char* api_name) noexcept {
  ThreadLocal& entry = tls_thread;
  if (__builtin_expect(entry.in_jemalloc != 0, 0)) {
    free_inside_jemalloc(entry, ptr);
    return;
  }
  if (__builtin_expect(entry.deferred_count.load(std::memory_order_relaxed) != 0 && entry.guard == 0, 0))
    drain_deferred_frees(entry);
  const uintptr_t address = reinterpret_cast<uintptr_t>(ptr);
  const UserBlock block = block_of_user_pointer(address);
  const uintptr_t region = block.region;
  BlockHeader* header = block.header;
  if (__builtin_expect(region == 0, 0)) {
    report_bad_free(ptr, classify_bad_free(address), api_name);
    return;
  }
  ThreadLocal& tl = tls_thread;
  const int saved_errno = errno;
  GuardScope guard(tl, true);
  ThreadState* s = tl.guard > 1 ? nullptr : current_state(tl);
  // A block collect mode holds for one more scan is the program's after all: it leaves quarantine
  // (this free decides its fate, not the collector's next scan) and is freed as asked.
  if (__builtin_expect(quarantine().active(), 0) && quarantine().release(region)) {
    report_reclaimed_call(address, header->size(), header->stack_id, api_name,
                          "while it was held for one more scan before being freed: freed now, as asked");
  }
  // Retire the block before jemalloc can hand its memory out again: once the region is back in a
  // tcache another thread may allocate it, and its live bit must not still say "old block".
  if (!block_map().retire(region)) {
    // Lost a race with a concurrent free: the program's own (a double free), or collect mode's.
    // The winner marks the header freed right after retiring; wait (briefly) to see whose it is.
    for (int spins = 0; spins < 1000; ++spins) {
      const uint64_t packed = __atomic_load_n(&header->packed, __ATOMIC_ACQUIRE);
      if ((packed >> (BlockHeader::kSizeBits + BlockHeader::kOffsetShiftBits)) & 1) break;
      sched_yield();
    }
    const bool by_collector = header->freed() && header->sequence == kFreedByCollector;
    report_bad_free(ptr, by_collector ? BadFreeKind::kReclaimed : BadFreeKind::kDouble, api_name);
    errno = saved_errno;
    return;
  }
  const BlockHeader old = *header;
  uint32_t free_stack = 0;
  if (tl.guard == 1) {
    StackCache* cache = s != nullptr ? s->stack_cache : nullptr;
    free_stack = config().free_stacks ? capture_stack(cache, config().stack_depth) : capture_caller(cache);
  }
  header->packed = BlockHeader::pack(old.size(), old.offset_shift(), true, old.thread_index());
  header->sequence = free_stack;
  count_free(s, old.size());
  release_region(s, region, old);
  errno = saved_errno;
}

bool free_reclaimed(uintptr_t region, uint32_t sequence) noexcept {
  if (!block_map().is_live(region)) return false;
  BlockHeader* header = block_map().header(region);
  if (header->sequence != sequence) return false;
  ThreadLocal& tl = tls_thread;
  GuardScope guard(tl);
  if (!block_map().retire(region)) return false;  // the program freed it first
  // Marked as the collector's free before the memory can be reused: a free by the program that
  // lost the race for the live bit waits for the mark (see free_tracked), and any later free of
  // the same pointer finds it (classify_bad_free).
  const BlockHeader old = *header;
  header->sequence = kFreedByCollector;
  __atomic_store_n(&header->packed, BlockHeader::pack(old.size(), old.offset_shift(), true, old.thread_index()),
                   __ATOMIC_RELEASE);
  count_free(nullptr, old.size());
  release_region(nullptr, region, old);
  return true;
}

void api_free(void* ptr) noexcept {
  if (ptr == nullptr) return;
  if (__builtin_expect(tls_thread.in_jemalloc != 0, 0)) {
    free_inside_jemalloc(tls_thread, ptr);
    return;
  }
  if (__builtin_expect(private_heap().tracked().contains(ptr), 1)) {
    free_tracked(ptr, "free");
    return;
  }
  free_outside_tracked_heap(ptr);
}

size_t tracked_usable_size(uintptr_t region) noexcept {
  const BlockHeader* header = block_map().header(region);
  return je::sallocx(reinterpret_cast<void*>(region), 0) - header->user_offset();
}

// A program told the usable size of a block may use all of it (glibc and jemalloc promise that).
// The block's recorded size grows to match, so realloc moves every byte the program may have
// written and the collector scans them for pointers; the live-byte counters grow by the same.
void claim_usable_size(uintptr_t region, size_t usable) noexcept {
  BlockHeader* header = block_map().header(region);
  const size_t size = header->size();
  if (usable <= size) return;
  header->packed = BlockHeader::pack(usable, header->offset_shift(), false, header->thread_index());
  ThreadLocal& tl = tls_thread;
  ThreadState* s = tl.state;
  const size_t delta = usable - size;
  if (s == nullptr) {
    thread_registry().count_orphan_bytes(delta);
    return;
  }
  s->allocated_bytes.store(s->allocated_bytes.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
  s->unflushed_live_bytes += static_cast<int64_t>(delta);
}

size_t api_malloc_usable_size(const void* ptr) noexcept {
  if (ptr == nullptr) return 0;
  if (signal_safe_pool().contains(ptr)) return signal_safe_pool().size_of(ptr);
  if (__builtin_expect(tls_thread.in_jemalloc != 0, 0)) {  // no jemalloc here: the requested size
    if (!private_heap().tracked().contains(ptr)) return 0;
    const UserBlock block = block_of_user_pointer(reinterpret_cast<uintptr_t>(ptr));
    return block.region == 0 ? 0 : block.header->size();
  }
  if (private_heap().tracked().contains(ptr)) {
    uintptr_t region = region_of_user_pointer(reinterpret_cast<uintptr_t>(ptr));
    if (region == 0) return 0;
    const size_t usable = tracked_usable_size(region);
    claim_usable_size(region, usable);
    return usable;
  }
  if (private_heap().internal().contains(ptr)) return je::sallocx(ptr, 0);
  if (bootstrap_pool().contains(ptr)) return bootstrap_pool().size_of(ptr);
  return 0;
}

void* reallocate_tracked(void* ptr, size_t size, size_t alignment_hint) noexcept {
  const uintptr_t address = reinterpret_cast<uintptr_t>(ptr);
  const UserBlock block = block_of_user_pointer(address);
  const uintptr_t region = block.region;
  BlockHeader* header = block.header;
  if (region == 0) {
    report_bad_free(ptr, classify_bad_free(address), "realloc");
    errno = ENOMEM;
    return nullptr;
  }
  if (__builtin_expect(quarantine().active(), 0) && quarantine().release(region)) {
    run_guarded([&] {
      report_reclaimed_call(address, header->size(), header->stack_id, "realloc",
                            "while it was held for one more scan before being freed: kept, as the program uses it");
    });
  }
  const size_t old_size = header->size();
  const size_t offset = header->user_offset();
  if (size > static_cast<size_t>(PTRDIFF_MAX) - (offset > kHeaderSize ? offset : kHeaderSize) - kPageSize) {
    errno = ENOMEM;
    return nullptr;
  }
  ThreadLocal& tl = tls_thread;
  if (tl.guard == 0 && g_ready) {
    // Grow or shrink in place when jemalloc can keep the region (same size class, or a large run
    // that can be resized where it is) and the new size would put the header where it is now. An
    // aligned in-band block keeps its alignment; a whole-page block keeps its page, aligned as
    // asked. The block then gets the realloc's stack, like a new one.
    const size_t alignment = header->out_of_band() ? alignment_hint : offset;
    const bool plain = alignment <= 16;
    const PrivateHeap& heap = private_heap();
    const BlockPlacement placement = plain ? heap.place_plain(size) : heap.place_aligned(size, alignment);
    const int flags = plain ? 0 : MALLOCX_LG_ALIGN(log2_of_power(alignment));
    const size_t usable = je::sallocx(reinterpret_cast<void*>(region), 0);
    bool in_place = false;
    size_t new_usable = usable;
    if (placement.offset_shift == header->offset_shift() && region % alignment == 0) {
      in_place = je::nallocx(placement.request, flags) == usable;
      if (!in_place && usable > heap.small_max() && placement.request > heap.small_max()) {
        const int saved_errno = errno;
        GuardScope guard(tl, true);
        new_usable = je::xallocx(reinterpret_cast<void*>(region), placement.request, 0, flags);
        in_place = new_usable >= placement.request;
        errno = saved_errno;
      }
    }
    if (in_place) {
      const int saved_errno = errno;
      GuardScope guard(tl, true);
      ThreadState* s = current_state(tl);
      header->packed = BlockHeader::pack(size, header->offset_shift(), false, s != nullptr ? s->index : 0);
      header->stack_id = capture_stack(s != nullptr ? s->stack_cache : nullptr, config().stack_depth);
      header->sequence = next_sequence(s);
      if (new_usable != usable) block_map().record(region, new_usable, -1);
      count_free(s, old_size);
      count_allocation(s, size);
      errno = saved_errno;
      return ptr;
    }
  }
  void* fresh = allocate_tracked(size, alignment_hint > offset ? alignment_hint : offset, false);
  if (fresh == nullptr) return nullptr;
  std::memcpy(fresh, ptr, old_size < size ? old_size : size);
  free_tracked(ptr, "realloc");
  return fresh;
}

void* api_realloc(void* ptr, size_t size) noexcept {
  if (ptr == nullptr) return allocate_tracked(size, 16, false);
  if (size == 0) {  // glibc frees and returns NULL
    api_free(ptr);
    return nullptr;
  }
  if (__builtin_expect(tls_thread.in_jemalloc != 0, 0)) {
    // Inside jemalloc (a signal handler): move the block into the signal-safe pool.
    size_t old_size = 0;
    if (signal_safe_pool().contains(ptr))
      old_size = signal_safe_pool().size_of(ptr);
    else if (bootstrap_pool().contains(ptr))
      old_size = bootstrap_pool().size_of(ptr);
    else if (private_heap().tracked().contains(ptr))
      old_size = api_malloc_usable_size(ptr);
    else {
      errno = ENOMEM;  // an internal block's size needs jemalloc: not here
      return nullptr;
    }
    void* fresh = signal_safe_pool().allocate(size, 16, false);
    if (fresh == nullptr) return nullptr;
    std::memcpy(fresh, ptr, old_size < size ? old_size : size);
    api_free(ptr);
    return fresh;
  }
  if (signal_safe_pool().contains(ptr)) {
    // Out of the pool, now that jemalloc can serve it: the pool block goes back for reuse.
    const size_t old_size = signal_safe_pool().size_of(ptr);
    void* fresh = allocate_tracked(size, 16, false);
    if (fresh == nullptr) return nullptr;
    std::memcpy(fresh, ptr, old_size < size ? old_size : size);
    free_pool_block(ptr, "realloc", false);
    return fresh;
  }
  if (private_heap().tracked().contains(ptr)) return reallocate_tracked(ptr, size, 16);
  if (private_heap().internal().contains(ptr)) {
    void* p = je::rallocx(ptr, size, MALLOCX_ARENA(private_heap().internal_arena()) | MALLOCX_TCACHE_NONE);
    if (p == nullptr) errno = ENOMEM;
    return p;
  }
  if (bootstrap_pool().contains(ptr)) {
    size_t old_size = bootstrap_pool().size_of(ptr);
    void* fresh = allocate_tracked(size, 16, false);
    if (fresh != nullptr) std::memcpy(fresh, ptr, old_size < size ? old_size : size);
    return fresh;
  }
  // A block heapkeeper never handed out: its size is unknown, so it cannot be moved safely.
  report_bad_free(ptr, BadFreeKind::kForeignRealloc, "realloc");
  errno = ENOMEM;
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Threads, symbols, guard

namespace {

struct ThreadStartBundle {
  void* (*routine)(void*);
  void* argument;
  bool library_stack;  // glibc allocates the stack (the attributes supply none)
  // A program thread, counted as live by its creator before it exists: a main thread that calls
  // pthread_exit right after pthread_create must not find itself the last (ThreadRegistry).
  bool counted;
};

// Whether pthread_create with these attributes runs the thread on a stack glibc allocates (and
// caches after the thread exits), rather than on one the program supplied with
// pthread_attr_setstack. pthread_attr_getstack reports the lowest address, stackaddr - stacksize:
// with no stack supplied stackaddr is null, whatever size was set.
bool library_allocates_stack(const pthread_attr_t* attributes) {
  if (attributes == nullptr) return true;
  void* low = nullptr;
  size_t size = 0;
  if (pthread_attr_getstack(attributes, &low, &size) != 0) return false;
  return reinterpret_cast<uintptr_t>(low) + size == 0;
}

void* internal_thread_main(void* raw);

void* thread_trampoline(void* raw) {
  ThreadStartBundle bundle = *static_cast<ThreadStartBundle*>(raw);
  ThreadLocal& tl = tls_thread;
  {
    GuardScope guard(tl);
    je::dallocx(raw, MALLOCX_TCACHE_NONE);
    if (g_ready && tl.status == ThreadStatus::kUnregistered)
      thread_registry().register_current(bundle.routine == internal_thread_main, bundle.counted);
    if (tl.state != nullptr) tl.state->library_stack = bundle.library_stack;
  }
  return bundle.routine(bundle.argument);
}

}  // namespace

bool wrap_thread_start(void* (*routine)(void*), void* argument, const pthread_attr_t* attributes,
                       void* (**wrapped_routine)(void*), void** wrapped_argument) noexcept {
  if (!g_ready) return false;
  ThreadLocal& tl = tls_thread;
  GuardScope guard(tl);
  auto* bundle = static_cast<ThreadStartBundle*>(allocate_untracked(sizeof(ThreadStartBundle), 16, false));
  if (bundle == nullptr || !private_heap().internal().contains(bundle)) return false;
  bundle->routine = routine;
  bundle->argument = argument;
  bundle->library_stack = library_allocates_stack(attributes);
  bundle->counted = routine != internal_thread_main;
  if (bundle->counted) thread_registry().expect_program_thread();
  *wrapped_routine = thread_trampoline;
  *wrapped_argument = bundle;
  return true;
}

void discard_thread_start(void* wrapped_argument) noexcept {
  if (!private_heap().internal().contains(wrapped_argument)) return;
  // pthread_create failed: the thread counted for it never comes.
  if (static_cast<ThreadStartBundle*>(wrapped_argument)->counted) thread_registry().forget_expected_program_thread();
  je::dallocx(wrapped_argument, MALLOCX_TCACHE_NONE);
}

// No system call: a child in seccomp's strict mode may make none but read, write and exit. The
// fork-child handler has set g_process_pid (a vfork child, which runs none, shares the parent's
// memory and its loader's live locks, and counts as the parent).
bool in_forked_child() noexcept {
  const pid_t image = g_image_pid.load(std::memory_order_acquire);
  return image != 0 && g_process_pid.load(std::memory_order_acquire) != image;
}

void* lookup_next_symbol(const char* name) noexcept {
  ThreadLocal& tl = tls_thread;
  GuardScope guard(tl);
  return dlsym(RTLD_NEXT, name);
}

void warn_not_interposed(const char* const* names, int count) noexcept {
  DiagnosticLine line;
  line.text(
      "these allocation functions are not routed to heapkeeper (static linking, or another library "
      "defines them first), so their blocks are not tracked:");
  for (int i = 0; i < count; ++i) line.text(" ").text(names[i]);
  line.emit();
}

namespace {

constexpr size_t kInternalThreadStackBytes = size_t{1} << 20;

// The internal threads running now, by routine: what resume_internal_threads starts again.
struct RunningThread {
  std::atomic<void (*)()> routine{nullptr};
  char name[16] = {};
};
constexpr unsigned kMaxRunningThreads = 8;
RunningThread g_running[kMaxRunningThreads];
std::atomic<bool> g_pausing{false};
void (*g_paused[kMaxRunningThreads])() = {};
char g_paused_names[kMaxRunningThreads][16] = {};
unsigned g_paused_count = 0;

void note_running(void (*routine)(), const char* name, bool running) {
  for (RunningThread& slot : g_running) {
    void (*expected)() = running ? nullptr : routine;
    if (slot.routine.load(std::memory_order_acquire) != expected) continue;
    if (running) {
      std::strncpy(slot.name, name, sizeof(slot.name) - 1);
      slot.name[sizeof(slot.name) - 1] = '\0';
    }
    if (slot.routine.compare_exchange_strong(expected, running ? routine : nullptr, std::memory_order_acq_rel)) return;
  }
}

struct InternalThread {
  void (*routine)();
  char name[16];
  uint32_t credentials_epoch;  // the program credentials shared when it was made (thread_credentials.h)
};

void* internal_thread_main(void* raw) {
  InternalThread start = *static_cast<InternalThread*>(raw);
  ThreadLocal& tl = tls_thread;
  ++tl.guard;  // for the thread's whole life
  je::dallocx(raw, MALLOCX_TCACHE_NONE);
  ThreadState* self = tl.state != nullptr ? tl.state : thread_registry().register_current(true);
  if (self != nullptr) {
    self->heapkeeper_thread = true;
    // It holds the credentials of the thread that made it, as they were when last shared then;
    // what was shared since (the program may change them before this thread first runs) it takes now.
    self->credentials_followed.store(start.credentials_epoch, std::memory_order_release);
  }
  internal_thread_started();
  follow_thread_credentials();
  pthread_setname_np(pthread_self(), start.name);
  note_running(start.routine, start.name, true);
  run_without_throwing(start.routine, start.name);
  note_running(start.routine, start.name, false);
  return nullptr;
}

}  // namespace

bool start_internal_thread(void (*routine)(), const char* name) noexcept {
  ThreadLocal& tl = tls_thread;
  GuardScope guard(tl);
  auto* start = static_cast<InternalThread*>(allocate_untracked(sizeof(InternalThread), 16, false));
  if (start == nullptr || !private_heap().internal().contains(start)) return false;
  start->routine = routine;
  start->credentials_epoch = shared_credentials_epoch();
  std::strncpy(start->name, name, sizeof(start->name) - 1);
  start->name[sizeof(start->name) - 1] = '\0';
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  // Under an address-space limit the default stack (RLIMIT_STACK, 8 MiB) is address space the
  // program cannot have. heapkeeper's threads touch some 60 KiB of theirs at most (scans with
  // symbolized reports, stats requests); 1 MiB leaves them a wide margin.
  if (address_space_left() != 0) pthread_attr_setstacksize(&attributes, kInternalThreadStackBytes);
  pthread_t thread;
  // The thread starts with every signal blocked (it inherits this mask): a signal sent to the
  // process (a POSIX timer's, an AIO notification, kill) must reach a thread of the program, which
  // handles or waits for it, never heapkeeper's, where its default action could end the process.
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  // pthread_create is heapkeeper's own hook, whose trampoline registers the thread first.
  internal_thread_starting();
  const bool started = pthread_create(&thread, &attributes, internal_thread_main, start) == 0;
  if (!started) internal_thread_started();
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  pthread_attr_destroy(&attributes);
  if (!started) je::dallocx(start, MALLOCX_TCACHE_NONE);
  return started;
}

// Whether every task of the process but the caller is gone (/proc/self/task lists the caller only).
static bool alone_in_process() noexcept {
  const pid_t self = static_cast<pid_t>(raw_syscall(SYS_gettid));
  bool alone = true;
  const bool listed = for_each_numbered_entry("/proc/self/task", [&](long, const char*, long tid) {
    if (tid != self) alone = false;
  });
  return listed && alone;
}

bool pause_internal_threads() noexcept {
  ThreadLocal& tl = tls_thread;
  if (!g_ready || tl.guard != 0 || tl.state == nullptr || tl.state->heapkeeper_thread) return false;
  // Only heapkeeper's threads may stand in the way: another of the program's fails the call as
  // it would without heapkeeper.
  if (thread_registry().live_program_threads() > 1 || deferred_threads_pending()) return false;
  // Every other task one of heapkeeper's registered threads. One may be on its way (made, not yet
  // registered: a process that unshares in its first milliseconds), or a scan's tracer task
  // there for a moment: looked at again, for a fifth of a second at most.
  const pid_t self = static_cast<pid_t>(raw_syscall(SYS_gettid));
  const auto only_ours = [&] {
    bool ours_all = true;
    for_each_numbered_entry("/proc/self/task", [&](long, const char*, long tid) {
      if (tid != self) ours_all = ours_all && thread_registry().is_heapkeeper_thread(static_cast<pid_t>(tid));
    });
    return ours_all;
  };
  const uint64_t settle = monotonic_ns() + 200'000'000ull;
  while (!only_ours()) {
    if (monotonic_ns() >= settle) return false;
    timespec pause{0, 1'000'000};
    raw_syscall(SYS_nanosleep, reinterpret_cast<long>(&pause), 0);
  }
  GuardScope guard(tl);
  g_paused_count = 0;
  for (RunningThread& slot : g_running) {
    void (*routine)() = slot.routine.load(std::memory_order_acquire);
    if (routine == nullptr || g_paused_count == kMaxRunningThreads) continue;
    g_paused[g_paused_count] = routine;
    std::memcpy(g_paused_names[g_paused_count], slot.name, sizeof(slot.name));
    ++g_paused_count;
  }
  g_pausing.store(true, std::memory_order_release);
  wake_internal_threads();
  const uint64_t deadline = monotonic_ns() + 1'000'000'000ull;
  while (!alone_in_process()) {
    if (monotonic_ns() >= deadline) {
      // One would not end (a scan of a large heap, the last-thread watch): the program's call
      // fails as it would have; what ended starts again.
      g_pausing.store(false, std::memory_order_release);
      resume_internal_threads();
      return false;
    }
    wake_internal_threads();
    timespec pause{0, 200'000};
    raw_syscall(SYS_nanosleep, reinterpret_cast<long>(&pause), 0);
  }
  return true;
}

void resume_internal_threads() noexcept {
  g_pausing.store(false, std::memory_order_release);
  for (unsigned i = 0; i < g_paused_count; ++i) {
    bool running = false;
    for (const RunningThread& slot : g_running)
      running = running || slot.routine.load(std::memory_order_acquire) == g_paused[i];
    if (!running) start_internal_thread(g_paused[i], g_paused_names[i]);
  }
  g_paused_count = 0;
}

bool internal_threads_pausing() noexcept { return g_pausing.load(std::memory_order_acquire); }

void start_internal_thread_or_say(void (*routine)(), const char* name, const char* failure) noexcept {
  if (!start_internal_thread(routine, name) && failure != nullptr) DiagnosticLine().text(failure).emit();
}

void start_internal_thread_later(void (*routine)(), const char* name, uint32_t delay_ms, const char* failure) noexcept {
  for (DeferredThread& deferred : g_deferred_threads) {
    uint32_t expected = DeferredThread::kEmpty;
    if (!deferred.state.compare_exchange_strong(expected, DeferredThread::kFilling, std::memory_order_acquire))
      continue;
    deferred.routine = routine;
    deferred.failure = failure;
    deferred.due_ns = monotonic_ns() + uint64_t{delay_ms} * 1000000ull;
    std::strncpy(deferred.name, name, sizeof(deferred.name) - 1);
    deferred.name[sizeof(deferred.name) - 1] = '\0';
    deferred.state.store(DeferredThread::kWaiting, std::memory_order_release);
    g_deferred_thread_count.fetch_add(1, std::memory_order_release);
    return;
  }
  start_internal_thread_or_say(routine, name, failure);  // no room to wait: now
}

void start_deferred_threads_for_program(bool now, int read_fd) noexcept {
  ThreadLocal& tl = tls_thread;
  if (tl.guard != 0 || !g_ready) return;
  // Held from here: the filter's first check reads /proc/self/status through the wrapped read.
  GuardScope guard(tl);
  // The program sees its own call's errno only: a failed fstat or thread creation here must not
  // show through a call that then succeeds.
  const int saved_errno = errno;
  if (!now && read_fd >= 0 && !syscall_filter_installed()) {  // fstat may be what a filter forbids
    struct stat status {};
    now = fstat(read_fd, &status) == 0 && !S_ISREG(status.st_mode);
  }
  start_deferred_threads(now);
  errno = saved_errno;
}

void drop_deferred_threads() noexcept {
  for (DeferredThread& deferred : g_deferred_threads) {
    uint32_t expected = DeferredThread::kWaiting;
    if (deferred.state.compare_exchange_strong(expected, DeferredThread::kEmpty, std::memory_order_acq_rel))
      g_deferred_thread_count.fetch_sub(1, std::memory_order_release);
  }
}

void start_deferred_threads_slow(bool now) noexcept {
  // While this thread forks it may hold every jemalloc lock (ThreadLocal::forking): a signal
  // handler that interrupted the fork and waits in a wrapped call must not start a thread, whose
  // creation allocates (a SIGCHLD handler calling waitpid deadlocked so in an earlier version).
  if (g_threads_closed.load(std::memory_order_acquire) || tls_thread.forking) return;
  uint64_t clock = 0;
  for (DeferredThread& deferred : g_deferred_threads) {
    if (deferred.state.load(std::memory_order_acquire) != DeferredThread::kWaiting) continue;
    if (!now) {
      if (clock == 0) clock = monotonic_ns();
      if (clock < deferred.due_ns) continue;
    }
    uint32_t expected = DeferredThread::kWaiting;
    if (!deferred.state.compare_exchange_strong(expected, DeferredThread::kStarting, std::memory_order_acq_rel))
      continue;
    start_internal_thread_or_say(deferred.routine, deferred.name, deferred.failure);
    deferred.state.store(DeferredThread::kEmpty, std::memory_order_release);
    g_deferred_thread_count.fetch_sub(1, std::memory_order_release);
  }
}

void report_escaped_exception(const std::exception* error) noexcept {
  DiagnosticLine line;
  line.text("internal error, the program runs on");
  if (error != nullptr) line.text(": ").text(error->what());
  line.emit();
}

void enter_internal() noexcept { take_guard(tls_thread); }
void leave_internal() noexcept { release_guard(tls_thread); }

}  // namespace heapkeeper::alloc
