// Stack capture with a validated per-thread cache (see stack_capture.h).
//
// Unwinding with DWARF CFI costs ~17 ns a frame even in libunwind's fast trace, and a 24-frame
// stack on every malloc and free more than doubles the run time of an allocation-heavy program.
// Most consecutive allocations of a thread come from a call site it used moments ago, at the same
// stack depth, under the same callers. So each thread keeps its recent stacks, keyed by the
// program frame that called into heapkeeper — its return address, stack pointer and frame pointer,
// read through heapkeeper's own frame-pointer chain (this library is built with frame pointers) —
// together with the stack address where each caller's return address was found. A cached stack is
// reused when that entry frame is identical and every recorded slot still holds the same return
// address: one load and compare per frame instead of an unwind step.
//
// How exact it is: with the same entry (ip, sp) every frame below the first changed caller has the
// same size, so the callers' return-address slots are where they were; a changed caller changes
// its slot's content and forces a full unwind. The slot of each return address is located, when a
// stack is first unwound, as the first occurrence of that address above the previous slot; a stale
// copy of the same return address lying in a frame's locals could be picked instead, which would
// at worst attribute an allocation to the stack seen before — never crash, never mix threads.
// Only frames inside the thread's registered stack are cached: coroutine and sigaltstack stacks
// are unwound every time.
#define UNW_LOCAL_ONLY
#include "allocator/stack_capture.h"

#include <dlfcn.h>
#include <libunwind.h>
#include <link.h>

#include <cstring>
#include <new>

#include "allocator/config.h"
#include "allocator/jemalloc_calls.h"
#include "allocator/private_heap.h"
#include "allocator/stack_table.h"

namespace heapkeeper::alloc {

struct CachedFrame {
  uintptr_t ip;    // return address into this frame's function
  uintptr_t slot;  // stack address where that return address was found
};

struct CachedStack {
  uint32_t depth;  // 0: empty
  uint32_t stack_id;
  uintptr_t entry_sp, entry_rbp;
  // CachedFrame frames[capacity] follows
};

struct StackCache {
  static constexpr unsigned kSets = 64;
  static constexpr unsigned kWays = 4;
  static constexpr unsigned kEntries = kSets * kWays;
  uint32_t capacity;  // frames per entry
  uintptr_t stack_low, stack_high;
  size_t entry_bytes;
  uint64_t hits, misses;
  uint8_t next_way[kSets];
  static constexpr unsigned kCallerEntries = 256;
  uintptr_t caller_ip[kCallerEntries];
  uint32_t caller_id[kCallerEntries];
  // kEntries entries of entry_bytes follow

  CachedStack* entry(unsigned index) {
    return reinterpret_cast<CachedStack*>(reinterpret_cast<char*>(this + 1) + index * entry_bytes);
  }
  static CachedFrame* frames(CachedStack* e) { return reinterpret_cast<CachedFrame*>(e + 1); }
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

inline unsigned set_index(uintptr_t ip, uintptr_t sp) {
  uint64_t h = (ip ^ (sp << 9)) * 0x9e3779b97f4a7c15ull;
  return static_cast<unsigned>(h >> 58);  // 64 sets
}

inline uintptr_t load(uintptr_t address) { return *reinterpret_cast<const uintptr_t*>(address); }

// The program's frame that called into heapkeeper, found through our own frame-pointer chain.
struct EntryFrame {
  uintptr_t ip = 0, sp = 0, rbp = 0;
};

__attribute__((noinline)) EntryFrame find_entry_frame(uintptr_t stack_low, uintptr_t stack_high) {
  auto fp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  for (int hops = 0; hops < 16; ++hops) {
    if (fp < stack_low || fp + 16 > stack_high || (fp & 7) != 0) return {};
    const uintptr_t ra = load(fp + 8);
    if (!is_heapkeeper_code(ra)) return {ra, fp + 16, load(fp)};
    const uintptr_t next = load(fp);
    if (next <= fp) return {};
    fp = next;
  }
  return {};
}

// Unwinds with libunwind's fast trace; returns the number of program frames copied to `out`.
int unwind_program_frames(uintptr_t* out, int depth) {
  constexpr int kOwnFramesMax = 8;
  void* raw[Config::kMaxStackDepth + kOwnFramesMax];
  int n = unw_backtrace(raw, depth + kOwnFramesMax);
  int first = 0;
  while (first < n && is_heapkeeper_code(reinterpret_cast<uintptr_t>(raw[first]))) ++first;
  int count = n - first;
  if (count > depth) count = depth;
  for (int i = 0; i < count; ++i) out[i] = reinterpret_cast<uintptr_t>(raw[first + i]);
  return count < 0 ? 0 : count;
}

}  // namespace

StackCache* create_stack_cache() {
  const uint32_t capacity = static_cast<uint32_t>(config().stack_depth);
  const size_t entry_bytes = sizeof(CachedStack) + capacity * sizeof(CachedFrame);
  const size_t bytes = sizeof(StackCache) + StackCache::kEntries * entry_bytes;
  void* memory = je::mallocx(bytes, MALLOCX_ARENA(private_heap().internal_arena()) | MALLOCX_TCACHE_NONE | MALLOCX_ZERO);
  if (memory == nullptr) return nullptr;
  auto* cache = new (memory) StackCache();
  cache->capacity = capacity;
  cache->entry_bytes = entry_bytes;
  return cache;
}

void reset_stack_cache(StackCache* cache, uintptr_t stack_low, uintptr_t stack_high) {
  if (cache == nullptr) return;
  for (unsigned i = 0; i < StackCache::kEntries; ++i) cache->entry(i)->depth = 0;
  cache->stack_low = stack_low;
  cache->stack_high = stack_high;
  cache->hits = cache->misses = 0;
  for (auto& w : cache->next_way) w = 0;
  for (unsigned i = 0; i < StackCache::kCallerEntries; ++i) cache->caller_ip[i] = 0;
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
  uintptr_t ips[Config::kMaxStackDepth];
  if (cache == nullptr || cache->stack_high == 0 || static_cast<uint32_t>(depth) > cache->capacity) {
    int count = unwind_program_frames(ips, depth);
    if (count == 0) return StackTable::kNoStack;
    return stack_table().intern(ips, static_cast<uint32_t>(count), StackTable::hash(ips, static_cast<uint32_t>(count)));
  }
  const EntryFrame entry = find_entry_frame(cache->stack_low, cache->stack_high);
  const unsigned set = set_index(entry.ip, entry.sp);
  if (entry.sp != 0) {
    for (unsigned way = 0; way < StackCache::kWays; ++way) {
      CachedStack* candidate = cache->entry(set * StackCache::kWays + way);
      if (candidate->depth == 0 || candidate->entry_sp != entry.sp) continue;
      const CachedFrame* f = StackCache::frames(candidate);
      bool same = f[0].ip == entry.ip;
      for (uint32_t k = 1; same && k < candidate->depth; ++k) same = load(f[k].slot) == f[k].ip;
      if (same) {
        ++cache->hits;
        return candidate->stack_id;
      }
    }
  }
  ++cache->misses;
  const unsigned way = cache->next_way[set]++ % StackCache::kWays;
  CachedStack* cached = cache->entry(set * StackCache::kWays + way);

  const int count = unwind_program_frames(ips, depth);
  if (count == 0) return StackTable::kNoStack;
  const uint32_t id = stack_table().intern(ips, static_cast<uint32_t>(count), StackTable::hash(ips, static_cast<uint32_t>(count)));

  // Remember where each return address sits, so the next capture from here can be validated.
  if (entry.sp == 0 || ips[0] != entry.ip || static_cast<uint32_t>(depth) != cache->capacity) return id;
  CachedFrame* f = StackCache::frames(cached);
  f[0] = {ips[0], entry.sp - 8};
  uintptr_t previous = entry.sp - 8;
  constexpr uintptr_t kLargestFrame = 256 * 1024;
  for (int k = 1; k < count; ++k) {
    const uintptr_t limit = previous + kLargestFrame < cache->stack_high ? previous + kLargestFrame : cache->stack_high;
    uintptr_t slot = 0;
    for (uintptr_t a = previous + 8; a + 8 <= limit; a += 8) {
      if (load(a) == ips[k]) {
        slot = a;
        break;
      }
    }
    if (slot == 0) {
      cached->depth = 0;  // a frame outside this stack (signal frame, other stack): not cacheable
      return id;
    }
    f[k] = {ips[k], slot};
    previous = slot;
  }
  cached->depth = static_cast<uint32_t>(count);
  cached->stack_id = id;
  cached->entry_sp = entry.sp;
  cached->entry_rbp = entry.rbp;
  return id;
}

uint32_t capture_caller(StackCache* cache) {
  if (cache == nullptr || cache->stack_high == 0) return capture_stack(cache, 1);
  const EntryFrame entry = find_entry_frame(cache->stack_low, cache->stack_high);
  if (entry.sp == 0) return capture_stack(cache, 1);
  const unsigned index = static_cast<unsigned>((entry.ip * 0x9e3779b97f4a7c15ull) >> 56);
  if (cache->caller_ip[index] == entry.ip) return cache->caller_id[index];
  const uint32_t id = stack_table().intern(&entry.ip, 1, StackTable::hash(&entry.ip, 1));
  cache->caller_ip[index] = entry.ip;
  cache->caller_id[index] = id;
  return id;
}

}  // namespace heapkeeper::alloc
