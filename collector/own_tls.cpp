// Implementation of the exclusion of heapkeeper's own TLS (see own_tls.h).
#include "collector/own_tls.h"

#include <link.h>
#include <pthread.h>
#include <sys/uio.h>
#include <unistd.h>

#include "allocator/own_memory.h"
#include "allocator/thread_registry.h"

namespace heapkeeper::collect {
namespace {

// The TLS block's bounds and the ThreadLocal's, as offsets from the thread pointer (negative on
// x86-64: static TLS lies below the thread control block). Constant for every thread: the library
// is loaded at start (LD_PRELOAD), so its block is in static TLS at one fixed offset.
struct OwnTlsLayout {
  bool known = false;
  intptr_t block_start = 0, block_end = 0;
  intptr_t kept_start = 0, kept_end = 0;  // the ThreadLocal: stays a root
};
OwnTlsLayout g_layout;
bool g_looked_up = false;

struct Search {
  uintptr_t own_base;
  uintptr_t block = 0;
  size_t size = 0;
};

int find_own_block(dl_phdr_info* info, size_t, void* raw) {
  auto* search = static_cast<Search*>(raw);
  if (info->dlpi_addr != search->own_base) return 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    if (info->dlpi_phdr[i].p_type == PT_TLS) search->size = info->dlpi_phdr[i].p_memsz;
  }
  search->block = reinterpret_cast<uintptr_t>(info->dlpi_tls_data);
  return 1;
}

// Reads a word of a thread control block that may be going away: a failure is no fault.
bool read_word(uintptr_t address, uintptr_t& value) { return alloc::read_own_memory(address, &value, sizeof(value)); }

}  // namespace

void look_up_own_tls(uintptr_t own_base) {
  if (g_looked_up) return;
  g_looked_up = true;
  Search search{own_base};
  if (own_base == 0 || dl_iterate_phdr(find_own_block, &search) == 0 || search.block == 0 || search.size == 0) return;
  const auto thread_pointer = static_cast<uintptr_t>(pthread_self());
  const auto kept = reinterpret_cast<uintptr_t>(&alloc::tls_thread);
  // Only a block of static TLS below the thread control block, holding the ThreadLocal: anything
  // else (a library dlopened late gets dynamic TLS at no fixed offset) is left a root.
  if (search.block + search.size > thread_pointer || kept < search.block ||
      kept + sizeof(alloc::ThreadLocal) > search.block + search.size)
    return;
  g_layout.block_start = static_cast<intptr_t>(search.block - thread_pointer);
  g_layout.block_end = g_layout.block_start + static_cast<intptr_t>(search.size);
  g_layout.kept_start = static_cast<intptr_t>(kept - thread_pointer);
  g_layout.kept_end = g_layout.kept_start + static_cast<intptr_t>(sizeof(alloc::ThreadLocal));
  g_layout.known = true;
}

size_t own_tls_exclusions(uintptr_t thread_pointer, MemoryRange* out, size_t capacity) {
  if (!g_layout.known || thread_pointer == 0) return 0;
  // tcbhead_t: its first word (tcb) and its third (self) point to the thread control block itself.
  uintptr_t tcb = 0, self = 0;
  if (!read_word(thread_pointer, tcb) || tcb != thread_pointer ||
      !read_word(thread_pointer + 2 * sizeof(uintptr_t), self) || self != thread_pointer)
    return 0;
  size_t added = 0;
  auto add = [&](intptr_t start, intptr_t end) {
    if (end > start && added < capacity)
      out[added++] = {thread_pointer + static_cast<uintptr_t>(start), thread_pointer + static_cast<uintptr_t>(end)};
  };
  add(g_layout.block_start, g_layout.kept_start);
  add(g_layout.kept_end, g_layout.block_end);
  return added;
}

}  // namespace heapkeeper::collect
