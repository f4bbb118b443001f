// Implementation of the thread registry (see thread_registry.h).
#include "allocator/thread_registry.h"

#include <cstdlib>

#include <fcntl.h>
#include <limits.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <new>

#include "allocator/block_header.h"
#include "allocator/bounded_text.h"
#include "allocator/exited_stacks.h"
#include "allocator/jemalloc_calls.h"
#include "allocator/last_program_thread.h"
#include "allocator/private_heap.h"
#include "allocator/stack_capture.h"

namespace heapkeeper::alloc {

constinit thread_local ThreadLocal tls_thread __attribute__((tls_model("initial-exec")));

namespace {

ThreadRegistry g_registry;

void on_thread_exit(void* /*state*/) {
  ThreadLocal& tl = tls_thread;
  if (tl.status != ThreadStatus::kActive) return;
  take_guard(tl);
  bool last_program_thread = false;
  g_registry.on_exit_round(last_program_thread);
  release_guard(tl);
  // glibc ends the process with exit(0) when its last thread exits (pthread_exit from main, or
  // returning from the last thread function), counting every thread pthread_create made:
  // heapkeeper's own threads too, so a program whose main thread called pthread_exit never ended
  // (nor did SIGTERM end it: those threads block every signal). What glibc would do once the
  // program's threads are gone is done by a watcher (last_program_thread.h), once this thread has
  // run the rest of its key destructors and any thread glibc made without the hook has ended.
  if (last_program_thread) watch_for_last_program_thread();
}

}  // namespace

ThreadRegistry& thread_registry() { return g_registry; }

bool ThreadRegistry::initialize() { return pthread_key_create(&exit_key_, on_thread_exit) == 0; }

ThreadState* ThreadRegistry::take_state() {
  for (ThreadState* s = head_.load(std::memory_order_acquire); s != nullptr; s = s->next_in_registry) {
    bool expected = false;
    if (!s->in_use.load(std::memory_order_relaxed) &&
        s->in_use.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
      return s;
    }
  }
  void* memory = je::mallocx(sizeof(ThreadState),
                             MALLOCX_ARENA(private_heap().internal_arena()) | MALLOCX_TCACHE_NONE | MALLOCX_ALIGN(64));
  if (memory == nullptr) return nullptr;
  auto* s = new (memory) ThreadState();
  s->in_use.store(true, std::memory_order_relaxed);
  ThreadState* head = head_.load(std::memory_order_relaxed);
  do {
    s->next_in_registry = head;
  } while (!head_.compare_exchange_weak(head, s, std::memory_order_acq_rel));
  return s;
}

namespace {

// The main thread's stack, as pthread_getattr_np gives it, without reading /proc/self/maps (which
// glibc does for the main thread, a few tens of microseconds of every traced process's start,
// issue #12). The kernel puts the program's file name, AT_EXECFN, at the very top of the stack: it
// ends one word below the stack mapping's end. The stack may grow down to RLIMIT_STACK below that
// end (glibc's default of 32 MiB when unlimited). Only on the main thread; false elsewhere or if
// the auxiliary vector does not say.
bool main_thread_stack(pid_t tid, uintptr_t& low, uintptr_t& high) {
  if (tid != getpid()) return false;
  const auto* file_name = reinterpret_cast<const char*>(getauxval(AT_EXECFN));
  if (file_name == nullptr) return false;
  const uintptr_t end = reinterpret_cast<uintptr_t>(file_name) + std::strlen(file_name) + 1 + sizeof(void*);
  const auto here = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  if ((end & (kPageSize - 1)) != 0 || here >= end) return false;  // not the layout described above
  rlimit limit{};
  uint64_t size = uint64_t{32} << 20;
  if (getrlimit(RLIMIT_STACK, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) size = limit.rlim_cur;
  size &= ~uint64_t{kPageSize - 1};
  if (size > end - kPageSize) size = end - kPageSize;
  if (end - size > here) size = end - (here & ~uintptr_t{kPageSize - 1});  // a stack larger than its limit
  low = end - size;
  high = end;
  return true;
}

}  // namespace

void ThreadRegistry::expect_program_thread() { live_program_threads_.fetch_add(1, std::memory_order_acq_rel); }
void ThreadRegistry::forget_expected_program_thread() { live_program_threads_.fetch_sub(1, std::memory_order_acq_rel); }

ThreadState* ThreadRegistry::register_current(bool heapkeeper_thread, bool counted) {
  ThreadLocal& tl = tls_thread;
  ThreadState* s = take_state();
  if (s == nullptr) {
    tl.status = ThreadStatus::kExited;
    return nullptr;
  }
  uint32_t index = indices_taken_.fetch_add(1, std::memory_order_relaxed) + 1;
  // Said afresh: a state taken over from an exited thread of heapkeeper's kept its flag, and a
  // program thread given it was never stopped nor scanned as a root.
  s->heapkeeper_thread = heapkeeper_thread;
  s->parked.store(false, std::memory_order_relaxed);
  if (!heapkeeper_thread && !counted) live_program_threads_.fetch_add(1, std::memory_order_acq_rel);
  s->index = index < BlockHeader::kMaxThreadIndex ? index : BlockHeader::kMaxThreadIndex;
  s->tid = static_cast<pid_t>(::syscall(SYS_gettid));
  s->handle = pthread_self();
  s->unflushed_live_bytes = 0;
  s->sequence_next = s->sequence_end = 0;
  s->library_stack = false;  // until the pthread_create wrapper says otherwise

  if (!main_thread_stack(s->tid, s->stack_low, s->stack_high)) {
    pthread_attr_t attributes;
    if (pthread_getattr_np(pthread_self(), &attributes) == 0) {
      void* low = nullptr;
      size_t size = 0;
      if (pthread_attr_getstack(&attributes, &low, &size) == 0) {
        s->stack_low = reinterpret_cast<uintptr_t>(low);
        s->stack_high = s->stack_low + size;
      }
      pthread_attr_destroy(&attributes);
    }
  }
  // This thread may run on the cached stack of one that exited: that stack is live again.
  exited_stacks().forget_overlapping(s->stack_low, s->stack_high);
  if (index < kTrackedInfos) {
    infos_[index].tid = s->tid;
    if (pthread_getname_np(pthread_self(), infos_[index].name, sizeof(infos_[index].name)) != 0)
      infos_[index].name[0] = '\0';
  }

  // Bind the thread to one tracked arena so that jemalloc's fast path (malloc/sdallocx with the
  // thread's automatic tcache) serves it; the tcache is filled only from this arena.
  // heapkeeper's own threads allocate only from the internal arena, without a thread cache, and
  // never capture a stack (their guard is held for their whole life): no thread cache or stack
  // cache, whose first pages a short process would pay for. They are bound to the internal arena
  // (arena 0, jemalloc's one automatic arena, where every thread starts): jemalloc purges all of
  // an automatic arena when the last thread bound to it moves to another (arena_migrate). Moved to
  // a tracked arena, the live-stats thread's start purged the internal arena's freed pages (a
  // madvise, and faults when they are used again), and so did every program thread's start; a
  // thread of heapkeeper's staying there keeps them (issue #12).
  s->arena = private_heap().tracked_arena_for(heapkeeper_thread ? 0 : s->index);
  unsigned bound_arena = heapkeeper_thread ? private_heap().internal_arena() : s->arena;
  je::mallctl("thread.arena", nullptr, nullptr, &bound_arena, sizeof(bound_arena));
  if (!heapkeeper_thread) {
    bool enabled = true;
    je::mallctl("thread.tcache.enabled", nullptr, nullptr, &enabled, sizeof(enabled));
    if (s->stack_cache == nullptr) s->stack_cache = create_stack_cache();
  }
  reset_stack_cache(s->stack_cache, s->stack_low, s->stack_high);
  pthread_setspecific(exit_key_, s);
  // The mallctl calls above made jemalloc's state of this thread nominal, and jemalloc sets its key
  // only when that state changes, which it now does only in its teardown. Clearing the key here
  // keeps glibc from tearing it down in the first destructor round; on_exit_round does it last.
  tl.jemalloc_thread_data = pthread_getspecific(je_tsd_tsd);
  if (tl.jemalloc_thread_data != nullptr) pthread_setspecific(je_tsd_tsd, nullptr);
  tl.exit_rounds = 0;
  tl.state = s;
  tl.status = ThreadStatus::kActive;
  return s;
}

bool ThreadRegistry::on_exit_round(bool& last_program_thread) {
  ThreadLocal& tl = tls_thread;
  // glibc runs the key destructors again while one of them set a value, PTHREAD_DESTRUCTOR_ITERATIONS
  // rounds at most: re-arming our key every round but the last keeps the thread registered through
  // every round in which the program's own destructors run.
  if (++tl.exit_rounds < PTHREAD_DESTRUCTOR_ITERATIONS && tl.state != nullptr) {
    pthread_setspecific(exit_key_, tl.state);
    return true;
  }
  // The last of the program's threads: the caller starts the watch for the process's end.
  if (tl.state != nullptr && !tl.state->heapkeeper_thread &&
      live_program_threads_.fetch_sub(1, std::memory_order_acq_rel) == 1)
    last_program_thread = true;
  retire_current();
  // jemalloc's teardown (flushes the thread cache back to the arenas, unbinds the arena), exactly
  // what its own key destructor would have done. If jemalloc re-armed its key meanwhile and glibc
  // already ran it, its state is in "purgatory" and this call does nothing.
  void* jemalloc_data = pthread_getspecific(je_tsd_tsd);
  if (jemalloc_data == nullptr) jemalloc_data = tl.jemalloc_thread_data;
  tl.jemalloc_thread_data = nullptr;
  if (jemalloc_data != nullptr) {
    pthread_setspecific(je_tsd_tsd, nullptr);
    je::Call inside;
    je_tsd_cleanup(jemalloc_data);
  }
  return false;
}

void ThreadRegistry::retire_current() {
  ThreadLocal& tl = tls_thread;
  ThreadState* s = tl.state;
  tl.state = nullptr;
  tl.status = ThreadStatus::kExited;
  if (s == nullptr) return;
  // Its name as it leaves (refresh_name): PR_GET_NAME reads this thread's own, with no file.
  if (s->index < kTrackedInfos) {
    char name[sizeof(ThreadInfo::name)] = {};
    if (prctl(PR_GET_NAME, name) == 0) std::memcpy(infos_[s->index].name, name, sizeof(name));
  }
  flush_live_bytes(*s);
  retired_allocations_.fetch_add(s->allocations.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
  retired_frees_.fetch_add(s->frees.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
  retired_allocated_bytes_.fetch_add(s->allocated_bytes.exchange(0, std::memory_order_relaxed),
                                     std::memory_order_relaxed);
  retired_freed_bytes_.fetch_add(s->freed_bytes.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
  // The thread still runs on its stack (the rest of its teardown): the collector trusts this
  // record only once the thread is gone.
  if (s->library_stack) exited_stacks().note({s->tid, s->stack_low, s->stack_high, static_cast<uintptr_t>(s->handle)});
  s->stack_low = s->stack_high = 0;
  s->library_stack = false;
  s->in_use.store(false, std::memory_order_release);
}

void ThreadRegistry::flush_live_bytes(ThreadState& s) {
  int64_t delta = s.unflushed_live_bytes;
  s.unflushed_live_bytes = 0;
  int64_t now = live_bytes_.fetch_add(delta, std::memory_order_relaxed) + delta;
  int64_t peak = peak_bytes_.load(std::memory_order_relaxed);
  while (now > peak && !peak_bytes_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

uint64_t ThreadRegistry::peak_live_bytes() const {
  ThreadTotals t = totals();
  const int64_t exact_now = static_cast<int64_t>(t.allocated_bytes - t.freed_bytes);
  // Raise the recorded peak to what was just measured, so a published peak never goes down.
  int64_t peak = peak_bytes_.load(std::memory_order_relaxed);
  while (exact_now > peak && !peak_bytes_.compare_exchange_weak(peak, exact_now, std::memory_order_relaxed)) {
  }
  return static_cast<uint64_t>(peak > exact_now ? peak : exact_now);
}

void ThreadRegistry::count_orphan_allocation(size_t bytes) {
  retired_allocations_.fetch_add(1, std::memory_order_relaxed);
  retired_allocated_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  live_bytes_.fetch_add(static_cast<int64_t>(bytes), std::memory_order_relaxed);
}

void ThreadRegistry::count_orphan_bytes(size_t bytes) {
  retired_allocated_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  live_bytes_.fetch_add(static_cast<int64_t>(bytes), std::memory_order_relaxed);
}

void ThreadRegistry::count_orphan_free(size_t bytes) {
  retired_frees_.fetch_add(1, std::memory_order_relaxed);
  retired_freed_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  live_bytes_.fetch_sub(static_cast<int64_t>(bytes), std::memory_order_relaxed);
}

ThreadTotals ThreadRegistry::totals() const {
  ThreadTotals t;
  t.allocations = retired_allocations_.load(std::memory_order_relaxed);
  t.frees = retired_frees_.load(std::memory_order_relaxed);
  t.allocated_bytes = retired_allocated_bytes_.load(std::memory_order_relaxed);
  t.freed_bytes = retired_freed_bytes_.load(std::memory_order_relaxed);
  for (ThreadState* s = head_.load(std::memory_order_acquire); s != nullptr; s = s->next_in_registry) {
    t.allocations += s->allocations.load(std::memory_order_relaxed);
    t.frees += s->frees.load(std::memory_order_relaxed);
    t.allocated_bytes += s->allocated_bytes.load(std::memory_order_relaxed);
    t.freed_bytes += s->freed_bytes.load(std::memory_order_relaxed);
    if (s->in_use.load(std::memory_order_relaxed)) ++t.live_threads;
  }
  t.threads_seen = indices_taken_.load(std::memory_order_relaxed);
  return t;
}

void ThreadRegistry::refresh_name(const ThreadState& s) {
  if (s.index == 0 || s.index >= kTrackedInfos || s.tid <= 0) return;
  char path[48];
  BoundedText(path, sizeof(path)).text("/proc/self/task/").number(static_cast<uint64_t>(s.tid)).text("/comm");
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;  // the thread has just exited: its last name was read as it did
  char name[sizeof(ThreadInfo::name)] = {};
  const ssize_t length = ::read(fd, name, sizeof(name) - 1);
  ::close(fd);
  if (length <= 0) return;
  if (name[length - 1] == '\n') name[length - 1] = '\0';
  std::memcpy(infos_[s.index].name, name, sizeof(name));
}

const ThreadInfo* ThreadRegistry::info(uint32_t index) const {
  if (index == 0 || index >= kTrackedInfos || index > indices_taken_.load(std::memory_order_relaxed)) return nullptr;
  return &infos_[index];
}

void ThreadRegistry::after_fork_in_child() {
  ThreadState* self = tls_thread.state;
  exited_stacks().after_fork_in_child();
  live_program_threads_.store(self != nullptr && !self->heapkeeper_thread ? 1 : 0, std::memory_order_release);
  for (ThreadState* s = head_.load(std::memory_order_acquire); s != nullptr; s = s->next_in_registry) {
    if (s == self) {
      s->tid = static_cast<pid_t>(::syscall(SYS_gettid));
      s->handle = pthread_self();
      continue;
    }
    // The thread does not exist in the child. Its counters stay: the memory it allocated does.
    // glibc keeps its stack for reuse in the child too: an exited thread's stack.
    if (s->in_use.load(std::memory_order_relaxed) && s->library_stack)
      exited_stacks().note({s->tid, s->stack_low, s->stack_high, static_cast<uintptr_t>(s->handle)});
    s->stack_low = s->stack_high = 0;
    s->library_stack = false;
    s->in_use.store(false, std::memory_order_release);
  }
}

}  // namespace heapkeeper::alloc
