// Implementation of stack capture (see stack_capture.h).
#define UNW_LOCAL_ONLY
#include "allocator/stack_capture.h"

#include <dlfcn.h>
#include <link.h>
#include <libunwind.h>

#include <new>

#include "allocator/config.h"
#include "allocator/jemalloc_api.h"
#include "allocator/private_heap.h"
#include "allocator/stack_table.h"

namespace heapkeeper::alloc {

struct StackCache {
  static constexpr unsigned kEntries = 256;
  struct Entry {
    uint64_t hash;
    uint32_t id;
  };
  Entry entries[kEntries];
  uintptr_t stack_low, stack_high;
};

namespace {

uintptr_t g_self_low = 0, g_self_high = 0;

struct SelfRange {
  uintptr_t probe;
  uintptr_t low, high;
};

int find_self(dl_phdr_info* info, size_t, void* data) {
  auto* range = static_cast<SelfRange*>(data);
  uintptr_t low = UINTPTR_MAX, high = 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
    uintptr_t start = info->dlpi_addr + ph.p_vaddr;
    if (start < low) low = start;
    if (start + ph.p_memsz > high) high = start + ph.p_memsz;
  }
  if (range->probe >= low && range->probe < high) {
    range->low = low;
    range->high = high;
    return 1;
  }
  return 0;
}

}  // namespace

StackCache* create_stack_cache() {
  void* memory = hk_je_mallocx(sizeof(StackCache), MALLOCX_ARENA(private_heap().internal_arena()) | MALLOCX_TCACHE_NONE);
  return memory == nullptr ? nullptr : new (memory) StackCache();
}

void reset_stack_cache(StackCache* cache, uintptr_t stack_low, uintptr_t stack_high) {
  if (cache == nullptr) return;
  for (auto& e : cache->entries) e = {0, 0};
  cache->stack_low = stack_low;
  cache->stack_high = stack_high;
}

bool initialize_stack_capture() {
  SelfRange range{reinterpret_cast<uintptr_t>(&capture_stack), 0, 0};
  dl_iterate_phdr(find_self, &range);
  g_self_low = range.low;
  g_self_high = range.high;
  unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
  void* warm[4];
  unw_backtrace(warm, 4);
  return true;
}

bool is_heapkeeper_code(uintptr_t address) { return address >= g_self_low && address < g_self_high; }

uint32_t capture_stack(StackCache* cache, int depth) {
  constexpr int kOwnFramesMax = 6;
  void* raw[Config::kMaxStackDepth + kOwnFramesMax];
  int n = unw_backtrace(raw, depth + kOwnFramesMax);
  int first = 0;
  while (first < n && is_heapkeeper_code(reinterpret_cast<uintptr_t>(raw[first]))) ++first;
  int count = n - first;
  if (count > depth) count = depth;
  if (count <= 0) return StackTable::kNoStack;
  const auto* frames = reinterpret_cast<const uintptr_t*>(raw + first);
  const uint64_t hash = StackTable::hash(frames, static_cast<uint32_t>(count));
  if (cache != nullptr) {
    StackCache::Entry& entry = cache->entries[hash % StackCache::kEntries];
    if (entry.hash == hash && entry.id != 0) return entry.id;
    uint32_t id = stack_table().intern(frames, static_cast<uint32_t>(count), hash);
    entry = {hash, id};
    return id;
  }
  return stack_table().intern(frames, static_cast<uint32_t>(count), hash);
}

}  // namespace heapkeeper::alloc
