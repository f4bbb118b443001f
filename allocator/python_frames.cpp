// Python frames merged into allocation stacks (see python_frames.h).
//
// Per allocation on a thread that runs Python: the thread state from the GIL-state key, then for
// each Python frame (innermost first, at most the stack depth) its code object, instruction, owner
// and entry flag, and from the code object the first traceable instruction, the name and the line
// table's addresses (the code key: allocator/python_frame_word.h). A per-thread direct-mapped cache
// maps a hash of (native stack id, every frame's word and eval group) to the merged stack's id,
// so the common case interns nothing. A cache entry can only be reused for the same native stack
// and the same code keys at the same instructions: a code object that died and whose address now
// holds other code has another key, and misses.
#include "allocator/python_frames.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>

#include <bit>
#include <cstring>

#include "allocator/config.h"
#include "allocator/diagnostics.h"
#include "allocator/jemalloc_calls.h"
#include "allocator/private_heap.h"
#include "allocator/python_code_table.h"
#include "allocator/python_frame_word.h"
#include "allocator/python_layout.h"
#include "allocator/stack_table.h"
#include "allocator/unloaded_modules.h"

namespace heapkeeper::alloc {

// Set-associative, four ways to a cache line, the set and the check both taken from the hash of the
// whole walk. It starts small and doubles (up to kMaxShift) while it misses often, as the native
// stack cache does: a thread that allocates under a few Python stacks keeps 16 KiB, an
// interpreter's main thread running tens of thousands of (native stack, Python frames)
// combinations gets room for them. On python3's object churn (bench/workloads/python_churn.py) a
// direct-mapped 2^12 entries missed on 4.4% of allocations, each miss costing a merge and an intern
// that walk the stack table's nodes; these miss on 0.9%. (A set chosen by the native stack and the
// innermost Python frame, to fetch its line during the walk, missed on 5%: many stacks share those.)
struct PythonStackCache {
  static constexpr unsigned kWays = 4;
  static constexpr unsigned kFirstShift = 10;  // entries, log2
  static constexpr unsigned kMaxShift = 14;
  static constexpr uint32_t kWindow = 1u << 14;          // lookups per growth decision
  static constexpr uint32_t kGrowMisses = kWindow / 64;  // grow when more than 1 in 64 missed
  struct Entry {
    uint64_t check;  // 0: empty
    uint32_t stack_id;
  };
  static_assert(sizeof(Entry) * kWays == 64);
  Entry* entries;  // 2^shift, each set's kWays in one cache line
  unsigned shift;
  uint32_t window_lookups, window_misses;

  Entry* set(uint64_t hash) const { return entries + (hash >> (64 - (shift - 2))) * kWays; }
};
static_assert(PythonStackCache::kWays == 4, "set() takes two bits off the shift");

namespace {

// What initialize_python_frames found; read-only afterwards.
struct Interpreter {
  bool enabled = false;
  uintptr_t runtime = 0;
  uintptr_t eval_low = 0, eval_high = 0;  // _PyEval_EvalFrameDefault's code
  unsigned code_unit_shift = 0;           // log2 of the layout's code_unit_bytes
  HeapkeeperPythonLayout layout{};
};
Interpreter g_python;

template <typename T>
inline T load(uintptr_t address) {
  T value;
  std::memcpy(&value, reinterpret_cast<const void*>(address), sizeof value);
  return value;
}

// The calling thread's PyThreadState, or 0: none yet (a thread Python never ran on), the key not
// made yet or deleted, or the interpreter finalizing.
inline uintptr_t current_thread_state() {
  const uintptr_t runtime = g_python.runtime;
  const HeapkeeperPythonLayout& l = g_python.layout;
  if (load<uintptr_t>(runtime + l.runtime_finalizing) != 0) return 0;
  if (load<uintptr_t>(runtime + l.runtime_auto_interpreter) == 0) return 0;
  if (load<int>(runtime + l.runtime_tss_initialized) == 0) return 0;
  return reinterpret_cast<uintptr_t>(pthread_getspecific(load<pthread_key_t>(runtime + l.runtime_tss_key)));
}

// A code object's key: its address and what names it. CPython reuses a dead code object's
// address for the next one of the same size, and as often the addresses of its name and line
// table (an exec of one source in a loop reuses all three), so the key also takes the file name
// object, the first line and the bytecode's length: code from another file or at another line
// gets another key. (Code equal in all of these but whose file name object died and was reborn
// at the same address with other text still shares the older code's key.)
inline uint64_t code_key(uintptr_t code) {
  const HeapkeeperPythonLayout& l = g_python.layout;
  const auto qualname = static_cast<uint64_t>(load<uintptr_t>(code + l.code_qualname));
  const auto linetable = static_cast<uint64_t>(load<uintptr_t>(code + l.code_linetable));
  const auto filename = static_cast<uint64_t>(load<uintptr_t>(code + l.code_filename));
  const auto shape = (static_cast<uint64_t>(load<uint32_t>(code + l.code_first_line)) << 32) ^
                     static_cast<uint64_t>(load<int64_t>(code + l.var_size));
  uint64_t x = code ^ std::rotl(linetable, 21) ^ std::rotl(qualname, 42);
  x = (x ^ std::rotl(filename, 11) ^ std::rotl(shape, 53)) * 0x9e3779b97f4a7c15ull;
  return (x ^ (x >> 29)) & python_word::kKeyMask;
}

inline bool is_eval_frame(uintptr_t return_address) {
  return return_address - 1 >= g_python.eval_low && return_address - 1 < g_python.eval_high;
}

struct WalkedFrame {
  uint64_t word;
  uintptr_t code;
  uint32_t group;  // which _PyEval_EvalFrameDefault runs it: 0 the innermost
};

// The calling thread's Python frames, innermost first, at most `limit`; their hash (with `seed`)
// in `hash`.
int walk_python_frames(WalkedFrame* out, int limit, uint64_t seed, uint64_t& hash) {
  const uintptr_t thread = current_thread_state();
  if (thread == 0) return 0;
  const HeapkeeperPythonLayout& l = g_python.layout;
  const uintptr_t cframe = load<uintptr_t>(thread + l.thread_cframe);
  if (cframe == 0 || (cframe & 7) != 0) return 0;
  uintptr_t frame = load<uintptr_t>(cframe + l.cframe_current_frame);
  int count = 0;
  uint32_t group = 0;
  uint64_t h = seed;
  // Incomplete frames are skipped, not counted: bound the walk itself too.
  for (int hops = 0; frame != 0 && count < limit && hops < 4 * Config::kMaxStackDepth; ++hops) {
    if ((frame & 7) != 0) break;
    const uintptr_t code = load<uintptr_t>(frame + l.frame_code);
    const uintptr_t instruction = load<uintptr_t>(frame + l.frame_prev_instr);
    const bool entry = load<uint8_t>(frame + l.frame_is_entry) != 0;
    const uint8_t owner = load<uint8_t>(frame + l.frame_owner);
    const uintptr_t previous = load<uintptr_t>(frame + l.frame_previous);
    if (code == 0 || (code & 7) != 0) break;
    const uintptr_t first = code + l.code_adaptive;
    const auto traceable = static_cast<uintptr_t>(load<int>(code + l.code_first_traceable));
    if (instruction >= first && (owner == l.owner_generator || instruction >= first + traceable * l.code_unit_bytes)) {
      const uint64_t key = code_key(code);
      // A shift, not a division by code_unit_bytes (a divide on every frame of every allocation).
      const uint64_t word = python_word::make(key, (instruction - first) >> g_python.code_unit_shift);
      out[count++] = {word, code, group};
      h = (h ^ (word + group)) * 0xff51afd7ed558ccdull;
      h ^= h >> 32;
    }
    if (entry) ++group;
    frame = previous;
  }
  hash = h | 1;
  return count;
}

// Interns the native stack with the Python frames in place of the eval loop's frames: the k-th
// _PyEval_EvalFrameDefault frame (innermost first) becomes the Python frames of group k. Python
// frames whose eval frame is beyond the native stack's depth follow it, outermost last.
uint32_t intern_merged(uint32_t native_id, const WalkedFrame* python, int count) {
  const StackView native = stack_table().frames(native_id);
  uintptr_t merged[Config::kMaxStackDepth];
  uint32_t n = 0;
  int next = 0;
  uint32_t eval_index = 0;
  constexpr uint32_t kCapacity = Config::kMaxStackDepth;
  const auto emit_group = [&](uint32_t group) {
    bool any = false;
    while (next < count && python[next].group < group) ++next;  // a group with no eval frame left
    while (next < count && python[next].group == group) {
      if (n < kCapacity) merged[n++] = python[next].word;
      ++next;
      any = true;
    }
    return any;
  };
  for (uint32_t i = 0; i < native.depth && n < kCapacity; ++i) {
    const uintptr_t frame = native.frames[i];
    if (is_eval_frame(frame) && next < count) {
      if (!emit_group(eval_index++)) merged[n++] = frame;
    } else {
      merged[n++] = frame;
    }
  }
  for (; next < count && n < kCapacity; ++next) merged[n++] = python[next].word;
  const uint32_t generation = native.depth != 0 ? native.generation : module_generation();
  // A stack this call made has its codes remembered (one found already made had them remembered by
  // its maker).
  bool made = false;
  const uint32_t id = stack_table().intern(merged, n, generation, &made);
  if (made)
    for (int i = 0; i < count; ++i) python_code_table().remember(python_word::code_key(python[i].word), python[i].code);
  return id;
}

uintptr_t symbol(const char* name) { return reinterpret_cast<uintptr_t>(dlsym(RTLD_DEFAULT, name)); }

}  // namespace

bool python_frames_enabled() { return g_python.enabled; }

void initialize_python_frames() {
  if (!config().python) return;
  const uintptr_t eval = symbol("_PyEval_EvalFrameDefault");
  if (eval == 0) return;                                  // no CPython here
  const uintptr_t version_symbol = symbol("Py_Version");  // 3.11 and later
  const unsigned long version = version_symbol != 0 ? load<unsigned long>(version_symbol) : 0;
  if ((version >> 16) != 0x030B) {
    DiagnosticLine line;
    line.text("CPython ");
    if (version == 0)
      line.text("older than 3.11");
    else
      line.number(version >> 24).text(".").number((version >> 16) & 0xFF);
    line.text(" in this process: stacks show its native frames only (Python frames need CPython 3.11)").emit();
    return;
  }
  const HeapkeeperPythonLayout* layout = heapkeeper_python311_layout();
  if (layout == nullptr) {
    DiagnosticLine()
        .text(
            "CPython 3.11 in this process, but heapkeeper was built without its headers: stacks show native frames "
            "only")
        .emit();
    return;
  }
  Dl_info info;
  void* entry_pointer = nullptr;
  const uintptr_t runtime = symbol("_PyRuntime");
  const uintptr_t code_type = symbol("PyCode_Type"), str_type = symbol("PyUnicode_Type");
  const uintptr_t bytes_type = symbol("PyBytes_Type");
  if (runtime == 0 || code_type == 0 || str_type == 0 || bytes_type == 0 ||
      !std::has_single_bit(layout->code_unit_bytes) ||
      dladdr1(reinterpret_cast<void*>(eval), &info, &entry_pointer, RTLD_DL_SYMENT) == 0 || entry_pointer == nullptr ||
      static_cast<const ElfW(Sym)*>(entry_pointer)->st_size == 0 ||
      !python_code_table().initialize(layout, code_type, str_type, bytes_type))
    return;
  g_python.layout = *layout;
  g_python.runtime = runtime;
  g_python.eval_low = eval;
  g_python.eval_high = eval + static_cast<const ElfW(Sym)*>(entry_pointer)->st_size;
  g_python.code_unit_shift = static_cast<unsigned>(std::countr_zero(layout->code_unit_bytes));
  g_python.enabled = true;
}

namespace {

void* allocate_internal(size_t bytes) {
  return je::mallocx(
      bytes, MALLOCX_ARENA(private_heap().internal_arena()) | MALLOCX_TCACHE_NONE | MALLOCX_ZERO | MALLOCX_LG_ALIGN(6));
}

// Gives `cache` an empty table of 2^shift entries, or, with `keep`, one holding what the old one
// held (an entry's set is its check's top bits: set i of the old table becomes set 2i or 2i+1, so
// nothing is displaced). False (table unchanged) when the internal arena cannot provide it.
bool size_table(PythonStackCache& cache, unsigned shift, bool keep) {
  auto* entries = static_cast<PythonStackCache::Entry*>(allocate_internal(sizeof(PythonStackCache::Entry) << shift));
  if (entries == nullptr) return false;
  PythonStackCache old = cache;
  cache.entries = entries;
  cache.shift = shift;
  if (old.entries == nullptr) return true;
  if (keep) {
    for (size_t i = 0; i < size_t{1} << old.shift; ++i) {
      const PythonStackCache::Entry& moved = old.entries[i];
      if (moved.check == 0) continue;
      PythonStackCache::Entry* set = cache.set(moved.check);
      unsigned way = 0;
      while (set[way].check != 0) ++way;  // at most kWays old entries come to a set
      set[way] = moved;
    }
  }
  je::dallocx(old.entries, MALLOCX_TCACHE_NONE);
  return true;
}

PythonStackCache* create_cache() {
  auto* cache = static_cast<PythonStackCache*>(allocate_internal(sizeof(PythonStackCache)));
  if (cache == nullptr) return nullptr;
  if (!size_table(*cache, PythonStackCache::kFirstShift, false)) {
    je::dallocx(cache, MALLOCX_TCACHE_NONE);
    return nullptr;
  }
  return cache;
}

// Doubles the table when the last window of lookups missed often.
void maybe_grow(PythonStackCache& cache) {
  const bool crowded = cache.window_misses > PythonStackCache::kGrowMisses;
  cache.window_lookups = cache.window_misses = 0;
  if (crowded && cache.shift < PythonStackCache::kMaxShift) size_table(cache, cache.shift + 1, true);
}

}  // namespace

uint32_t add_python_frames(PythonStackCache** thread_cache, uint32_t native_id, int depth) {
  WalkedFrame python[Config::kMaxStackDepth];
  uint64_t hash = 0;
  const int count = walk_python_frames(python, depth, (native_id + 1) * 0x9e3779b97f4a7c15ull, hash);
  if (count == 0) return native_id;
  // Without a thread's cache (a bad free's report, a thread whose state is gone) nothing is made:
  // a cache made for one call was never freed (64 KiB a call before it grew from 16).
  if (__builtin_expect(thread_cache == nullptr, 0)) return intern_merged(native_id, python, count);
  PythonStackCache* cache = *thread_cache;
  if (__builtin_expect(cache == nullptr, 0)) {
    *thread_cache = create_cache();  // probed from the next allocation on
    return intern_merged(native_id, python, count);
  }
  PythonStackCache::Entry* set = cache->set(hash);
  unsigned way = 0;
  for (; way < PythonStackCache::kWays; ++way) {
    if (set[way].check == hash) {
      if (__builtin_expect(++cache->window_lookups == PythonStackCache::kWindow, 0)) maybe_grow(*cache);
      return set[way].stack_id;
    }
  }
  ++cache->window_misses;
  const uint32_t id = intern_merged(native_id, python, count);
  if (id != StackTable::kNoStack) {
    // An empty way, else one chosen by the hash.
    for (way = 0; way < PythonStackCache::kWays && set[way].check != 0; ++way) {
    }
    if (way == PythonStackCache::kWays) way = static_cast<unsigned>(hash >> 1) % PythonStackCache::kWays;
    set[way].check = hash;
    set[way].stack_id = id;
  }
  // After the entry is written: growing frees the table it is in.
  if (++cache->window_lookups == PythonStackCache::kWindow) maybe_grow(*cache);
  return id;
}

void reset_python_stack_cache(PythonStackCache* cache) {
  if (cache == nullptr) return;
  cache->window_lookups = cache->window_misses = 0;
  // A new thread starts small again.
  if (cache->shift == PythonStackCache::kFirstShift || !size_table(*cache, PythonStackCache::kFirstShift, false))
    std::memset(cache->entries, 0, sizeof(PythonStackCache::Entry) << cache->shift);
}

}  // namespace heapkeeper::alloc
