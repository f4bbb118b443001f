// Implementation of the exclusion of exited threads' stacks (see exited_stack_exclusion.h).
#include "collector/exited_stack_exclusion.h"

#include <dlfcn.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdint>

#include "allocator/exited_stacks.h"
#include "allocator/own_memory.h"
#include "allocator/raw_syscall.h"
#include "allocator/thread_registry.h"
#include "collector/own_tls.h"

// The stack pointer at the process's entry (argc's address), from the dynamic linker.
extern "C" void* __libc_stack_end;

namespace heapkeeper::collect {
namespace {

// glibc's static TLS size (its thread control block included) and alignment, from ld.so's
// _dl_get_tls_static_info (as LeakSanitizer reads it); 0 when unknown.
size_t g_static_tls_size = 0, g_static_tls_align = 0;
bool g_static_tls_looked_up = false;

// Where the thread's stack proper ends below its static TLS. glibc places the thread control
// block so that it ends at most `align` bytes below the top of the mapping and the static TLS
// right below it (allocate_stack: stacktop = pd + 1 - roundup(size, align)); one more `align`
// keeps every byte of the TLS block above the boundary whatever the padding was.
uintptr_t stack_proper_end(uintptr_t high) {
  const uintptr_t align = g_static_tls_align > 0 ? g_static_tls_align : 64;
  const uintptr_t tls = (g_static_tls_size + align - 1) & ~(align - 1);
  return high > tls + align ? high - tls - align : 0;
}

// Reads a word that a thread tearing itself down might unmap meanwhile: a failure is no fault.
bool read_word(uintptr_t address, uintptr_t& value) { return alloc::read_own_memory(address, &value, sizeof(value)); }

bool still_a_cached_stack(const alloc::ExitedStack& stack, const StoppedThread* threads, size_t thread_count,
                          const MemoryRange* anonymous, size_t anonymous_count) {
  // A thread the stop found and stopped under this tid is alive (a tid reused, or a thread still
  // running code after its exit was noted): its stack is its own. One that exists but was not
  // stopped is past its last instruction in user space: pthread_join returns once the kernel has
  // cleared the thread's tid, and the task lingers in its exit path a moment longer (longer on a
  // loaded machine, which preempts it there), when kill(tid, 0) still succeeds. Asked that way, the
  // stack's dead frames were roots then, and a leak was missed (integration.exact_leak_count,
  // stale.scans: 39 of 40 in one CI run).
  for (size_t i = 0; i < thread_count; ++i) {
    const uintptr_t sp = threads[i].stack_pointer;
    if (threads[i].tid > 0 && (threads[i].tid == stack.tid || (sp >= stack.low && sp < stack.high))) return false;
  }
  bool overlaps_live = false;
  alloc::thread_registry().for_each_active([&](const alloc::ThreadState& s) {
    if (s.stack_low < stack.high && stack.low < s.stack_high) overlaps_live = true;
  });
  if (overlaps_live) return false;
  bool mapped = false;
  for (size_t i = 0; i < anonymous_count && !mapped; ++i)
    mapped = anonymous[i].start <= stack.low && stack.high <= anonymous[i].end;
  if (!mapped) return false;
  uintptr_t self = 0;
  return stack.thread_pointer >= stack.low && stack.thread_pointer < stack.high &&
         read_word(stack.thread_pointer, self) && self == stack.thread_pointer;
}

}  // namespace

void look_up_static_tls_layout() {
  if (g_static_tls_looked_up) return;
  g_static_tls_looked_up = true;
  using Query = void (*)(size_t*, size_t*);
  const auto query = reinterpret_cast<Query>(dlsym(RTLD_DEFAULT, "_dl_get_tls_static_info"));
  if (query != nullptr) query(&g_static_tls_size, &g_static_tls_align);
}

size_t exited_stack_exclusions(const StoppedThread* threads, size_t thread_count, const MemoryRange* anonymous,
                               size_t anonymous_count, MemoryRange* out, size_t capacity) {
  if (g_static_tls_size == 0) return 0;
  alloc::ExitedStack stacks[alloc::ExitedStacks::kSlots];
  const size_t count = alloc::exited_stacks().snapshot(stacks, alloc::ExitedStacks::kSlots);
  size_t added = 0;
  for (size_t i = 0; i < count && added < capacity; ++i) {
    const alloc::ExitedStack& stack = stacks[i];
    const uintptr_t end = stack_proper_end(stack.high);
    if (end <= stack.low || stack.thread_pointer < end) continue;
    if (!still_a_cached_stack(stack, threads, thread_count, anonymous, anonymous_count)) continue;
    out[added++] = {stack.low, end};
    added += own_tls_exclusions(stack.thread_pointer, out + added, capacity - added);  // own_tls.h
  }
  return added;
}

size_t exited_leader_stack_exclusion(const MemoryRange* anonymous, size_t anonymous_count, MemoryRange* out,
                                     size_t capacity) {
  const pid_t leader = getpid();
  if (capacity == 0 || current_tid() == leader || !alloc::thread_has_exited(leader, leader)) return 0;
  const auto entry = reinterpret_cast<uintptr_t>(__libc_stack_end);
  for (size_t i = 0; i < anonymous_count; ++i) {
    if (entry <= anonymous[i].start || entry >= anonymous[i].end) continue;
    out[0] = {anonymous[i].start, entry & ~uintptr_t{7}};
    return 1;
  }
  return 0;
}

}  // namespace heapkeeper::collect
