// The engine's narrow interface: what preload/ calls for every interposed symbol.
//
// Each function has the semantics of the glibc (or jemalloc, or C++ runtime) function it is named
// after, including errno, and decides itself whether the call is tracked (the normal case),
// internal (heapkeeper's own code is running on this thread: the reentrancy guard is held) or
// served from the bootstrap pool (the private heap is not up yet).
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>

#include "allocator/thread_registry.h"

namespace heapkeeper::alloc {

// Held by every exported function that allocates or frees, for the length of the call: it records
// that function's own frame, right above which the program's return address and stack pointer sit,
// so the stack capture finds where the program called in without walking heapkeeper's frames. The
// previous value comes back on the way out, which keeps it right when a signal handler's allocation
// nests inside another.
class EntryFrameScope {
 public:
  explicit EntryFrameScope(void* frame) noexcept : saved_(tls_thread.entry_frame) {
    tls_thread.entry_frame = reinterpret_cast<uintptr_t>(frame);
  }
  ~EntryFrameScope() { tls_thread.entry_frame = saved_; }
  EntryFrameScope(const EntryFrameScope&) = delete;
  EntryFrameScope& operator=(const EntryFrameScope&) = delete;

 private:
  uintptr_t saved_;
};
#define HK_ENTRY_FRAME() ::heapkeeper::alloc::EntryFrameScope hk_entry_frame_scope(__builtin_frame_address(0))

// C allocation API (glibc semantics).
void* api_malloc(size_t size) noexcept;
void api_free(void* ptr) noexcept;
void* api_calloc(size_t count, size_t size) noexcept;
void* api_realloc(void* ptr, size_t size) noexcept;
void* api_reallocarray(void* ptr, size_t count, size_t size) noexcept;
int api_posix_memalign(void** result, size_t alignment, size_t size) noexcept;
void* api_aligned_alloc(size_t alignment, size_t size) noexcept;
void* api_memalign(size_t alignment, size_t size) noexcept;
void* api_valloc(size_t size) noexcept;
void* api_pvalloc(size_t size) noexcept;
size_t api_malloc_usable_size(const void* ptr) noexcept;
int api_malloc_trim(size_t pad) noexcept;

// C++ operators: `alignment` 0 means the default; throwing variants throw std::bad_alloc after the
// new-handler loop, as libstdc++ does.
void* api_operator_new(size_t size, size_t alignment);
void* api_operator_new_nothrow(size_t size, size_t alignment) noexcept;
// The std::align_val_t forms: as above for a power of two; any other alignment (0 included) is
// std::bad_alloc at once, or null from the nothrow form, as libstdc++ answers it.
void* api_operator_new_aligned(size_t size, size_t alignment);
void* api_operator_new_aligned_nothrow(size_t size, size_t alignment) noexcept;
void api_operator_delete(void* ptr) noexcept;

// jemalloc's non-standard API, for programs linked with jemalloc (redis-server): served by the
// private heap; arena and tcache flags are ignored, alignment and zeroing are honoured.
void* api_mallocx(size_t size, int flags) noexcept;
void* api_rallocx(void* ptr, size_t size, int flags) noexcept;
size_t api_xallocx(void* ptr, size_t size, size_t extra, int flags) noexcept;
size_t api_sallocx(const void* ptr, int flags) noexcept;
void api_dallocx(void* ptr, int flags) noexcept;
size_t api_nallocx(size_t size, int flags) noexcept;
int api_mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen) noexcept;
int api_mallctlnametomib(const char* name, size_t* mibp, size_t* miblenp) noexcept;
int api_mallctlbymib(const size_t* mib, size_t miblen, void* oldp, size_t* oldlenp, void* newp, size_t newlen) noexcept;
void api_malloc_stats_print(void (*write_cb)(void*, const char*), void* cbopaque, const char* opts) noexcept;

// Thread creation: wraps the start routine so the new thread registers (stack bounds for the
// collector, and whether glibc allocates its stack: `attributes` as given to pthread_create) before
// running user code. Returns false if the wrapper could not be set up, in which case the caller
// starts the thread unwrapped.
bool wrap_thread_start(void* (*routine)(void*), void* argument, const pthread_attr_t* attributes,
                       void* (**wrapped_routine)(void*), void** wrapped_argument) noexcept;
// Frees the wrapper's bundle when thread creation failed.
void discard_thread_start(void* wrapped_argument) noexcept;

// dlsym(RTLD_NEXT, name), with the guard held so that anything dlsym allocates is internal.
void* lookup_next_symbol(const char* name) noexcept;
// Whether this is a fork child of the process this image started in (one whose fork ran
// heapkeeper's fork handlers), not yet exec'd.
bool in_forked_child() noexcept;
void warn_not_interposed(const char* const* names, int count) noexcept;

// Starts one of heapkeeper's own threads (detached): it runs `routine` with the guard held for its
// whole life (its allocations are internal) and is marked as heapkeeper's before it runs, so scans
// neither stop it nor take its stack for a root. False if the thread could not be created.
// What fork()'s handlers do, for a fork made without fork() (preload/raw_fork.h): jemalloc's and
// heapkeeper's, not the program's (a raw clone runs none of them). Nothing before start-up ended.
// prepare returns whether the after_ functions must run.
bool prepare_raw_fork() noexcept;
void after_raw_fork_in_parent() noexcept;
void after_raw_fork_in_child() noexcept;

bool start_internal_thread(void (*routine)(), const char* name) noexcept;
// The same, saying `failure` (one diagnostic line) when the thread cannot be created.
void start_internal_thread_or_say(void (*routine)(), const char* name, const char* failure) noexcept;

// A moment with no thread of heapkeeper's: Linux lets only a single-threaded process join or make
// a user namespace (unshare(CLONE_NEWUSER), setns), and `unshare -r` failed with EINVAL under
// heapkeeper. When the caller is the program's only thread and heapkeeper's running threads can
// all be asked to end (their waits return: thread_credentials.h's internal_sleep_until), they end
// and pause_internal_threads returns true once no other task is left (a second at most); the
// caller then makes its call and resume_internal_threads starts the same routines again (they
// find the state they left: the segment made, the scans' history). False, and nothing changed,
// when another thread of the program's runs or heapkeeper's would not end.
bool pause_internal_threads() noexcept;
void resume_internal_threads() noexcept;
// Whether heapkeeper's threads are to end now (pause_internal_threads): their waits return false.
bool internal_threads_pausing() noexcept;

// The same thread, started only once the process has run `delay_ms`, or sooner when the program
// waits (start_deferred_threads): for a forked child's threads (live stats, periodic scans), since
// most children a shell or make forks exec within milliseconds, and a thread made for one was made,
// scheduled and torn down for nothing (issue #12). Nothing starts it after the exit handlers began.
// `failure` is said (one diagnostic line) if the thread cannot be created when it is due.
void start_internal_thread_later(void (*routine)(), const char* name, uint32_t delay_ms, const char* failure) noexcept;
// Starts the deferred threads that are due, or all of them with `now` (the program is about to
// wait for something that may take long). Called every few thousand allocations of a thread and
// from the wrapped blocking calls; one load when nothing is deferred. Not with the guard held
// (heapkeeper's own reads and writes), except from the allocation path.
extern std::atomic<uint32_t> g_deferred_thread_count;
void start_deferred_threads_slow(bool now) noexcept;
inline void start_deferred_threads(bool now) noexcept {
  if (__builtin_expect(g_deferred_thread_count.load(std::memory_order_relaxed) != 0, 0))
    start_deferred_threads_slow(now);
}
// Whether a thread deferred by start_internal_thread_later still waits to start.
inline bool deferred_threads_pending() noexcept { return g_deferred_thread_count.load(std::memory_order_relaxed) != 0; }
// From a wrapped call of the program's (not heapkeeper's own, which holds the guard): a blocking
// call, or the program about to install a seccomp filter, after which creating a thread may be
// what kills it (`now`). `read_fd`, when not -1: the call reads it, and waits for long (`now`)
// unless it is a regular file.
void start_deferred_threads_for_program(bool now, int read_fd = -1) noexcept;
// The program enters seccomp strict mode, where only read, write, sigreturn and exit are allowed:
// a thread deferred now never starts. Made after, its clone would kill the process; made before,
// it would outlive the program, whose strict-mode end is the exit system call (one thread).
void drop_deferred_threads() noexcept;

// The calling thread's state, registering the thread first if it never allocated; null on a
// thread that is tearing down (or before start-up).
ThreadState* current_thread_state() noexcept;

// Runs `work` as heapkeeper's own code on this thread: its allocations are internal (untracked).
// It runs on the program's thread (the library constructor, the public API), so nothing it throws
// escapes: an exception ends the work with one diagnostic line.
void enter_internal() noexcept;
void leave_internal() noexcept;
void report_escaped_exception(const std::exception* error) noexcept;
template <typename Work>
void run_guarded(Work&& work) noexcept {
  enter_internal();
  try {
    work();
  } catch (const std::exception& error) {
    report_escaped_exception(&error);
  } catch (...) {
    report_escaped_exception(nullptr);
  }
  leave_internal();
}

// Start-up: runs from the first allocation or from the library constructor, whichever is first.
bool ensure_initialized() noexcept;
bool is_initialized() noexcept;

// Hooks for the layers above (report/, collector/): a stack printer for bad-free reports and a
// function run at exit. Installed once at start-up.
using StackPrinter = void (*)(uint32_t stack_id, const char* title);
void set_stack_printer(StackPrinter printer) noexcept;
using ExitHandler = void (*)();
void add_exit_handler(ExitHandler handler) noexcept;
// Runs in a forked child (after the registry is reset), with the guard held.
using ForkChildHandler = void (*)();
void add_fork_child_handler(ForkChildHandler handler) noexcept;

// Counters for reports and the public API.
uint64_t foreign_free_count() noexcept;
uint64_t bad_free_count() noexcept;

}  // namespace heapkeeper::alloc
