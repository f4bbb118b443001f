// Python frames merged into allocation stacks (see python_frames.h).
//
// Per allocation on a thread that runs Python: the thread state from the GIL-state key, then for
// each Python frame (innermost first, at most the stack depth) its code object, instruction, owner
// and entry flag, and from the code object the first traceable instruction, the name and the line
// table's addresses (the code key: allocator/python_frame_word.h). A per-thread set-associative
// cache maps a hash of (native stack id, every frame's code identity, instruction and eval group)
// to the merged stack's id, so the common case makes no frame word and interns nothing. A cache
// entry can only be reused for the same native stack and the same codes at the same instructions:
// a code object that died and whose address now holds other code has another identity, and misses.
#include "allocator/python_frames.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>

#include <bit>
#include <cstring>

#include "allocator/config.h"
#include "allocator/diagnostics.h"
#include "allocator/hash_mix.h"
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
  // Misses on a merged stack new to the stack table are not counted: a cache of any size would
  // have missed them. python3's imports make some 30,000 merged stacks, most of them once, and
  // counted they grew the cache to 2^14 entries (256 KiB), kept for the whole run; the churn after
  // them misses on under 0.1% of lookups at 2^12 entries (64 KiB), as far as it now grows.
  uint32_t window_lookups, window_misses;

  Entry* set(uint64_t hash) const { return entries + (hash >> (64 - (shift - 2))) * kWays; }
};
static_assert(PythonStackCache::kWays == 4, "set() takes two bits off the shift");

namespace {

// What initialize_python_frames found; read-only afterwards.
struct Interpreter {
  bool enabled = false;
  bool known_layout = false;  // the layout is KnownLayout311's: the walk addresses fields with constants
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

// The offsets the walk reads, two ways. The walk runs for every frame of every allocation, and with
// offsets read from g_python.layout each field costs an extra load (and the compiler reloads them
// after every store it cannot prove apart): about a third of a frame's instructions. KnownLayout311
// is CPython 3.11's layout on x86-64 as python_layout.c's headers give it, as constants; the walk
// is compiled for it and runs when the layout found at start-up is exactly that one
// (matches_known_layout), and for RuntimeLayout otherwise (another build of the interpreter).
struct KnownLayout311 {
  static constexpr size_t thread_cframe() { return 56; }
  static constexpr size_t cframe_current_frame() { return 8; }
  static constexpr size_t frame_code() { return 32; }
  static constexpr size_t frame_previous() { return 48; }
  static constexpr size_t frame_prev_instr() { return 56; }
  static constexpr size_t frame_is_entry() { return 68; }
  static constexpr size_t frame_owner() { return 69; }
  static constexpr uint32_t owner_generator() { return 1; }
  static constexpr size_t var_size() { return 16; }
  static constexpr size_t code_adaptive() { return 184; }
  static constexpr size_t code_first_traceable() { return 168; }
  static constexpr size_t code_first_line() { return 72; }
  static constexpr size_t code_qualname() { return 128; }
  static constexpr size_t code_filename() { return 112; }
  static constexpr size_t code_linetable() { return 136; }
  static constexpr size_t code_unit_bytes() { return 2; }
  static constexpr unsigned code_unit_shift() { return 1; }
};

struct RuntimeLayout {
  static size_t thread_cframe() { return g_python.layout.thread_cframe; }
  static size_t cframe_current_frame() { return g_python.layout.cframe_current_frame; }
  static size_t frame_code() { return g_python.layout.frame_code; }
  static size_t frame_previous() { return g_python.layout.frame_previous; }
  static size_t frame_prev_instr() { return g_python.layout.frame_prev_instr; }
  static size_t frame_is_entry() { return g_python.layout.frame_is_entry; }
  static size_t frame_owner() { return g_python.layout.frame_owner; }
  static uint32_t owner_generator() { return g_python.layout.owner_generator; }
  static size_t var_size() { return g_python.layout.var_size; }
  static size_t code_adaptive() { return g_python.layout.code_adaptive; }
  static size_t code_first_traceable() { return g_python.layout.code_first_traceable; }
  static size_t code_first_line() { return g_python.layout.code_first_line; }
  static size_t code_qualname() { return g_python.layout.code_qualname; }
  static size_t code_filename() { return g_python.layout.code_filename; }
  static size_t code_linetable() { return g_python.layout.code_linetable; }
  static size_t code_unit_bytes() { return g_python.layout.code_unit_bytes; }
  // A shift, not a division by code_unit_bytes (a divide on every frame of every allocation).
  static unsigned code_unit_shift() { return g_python.code_unit_shift; }
};

bool matches_known_layout(const HeapkeeperPythonLayout& l) {
  using K = KnownLayout311;
  return l.thread_cframe == K::thread_cframe() && l.cframe_current_frame == K::cframe_current_frame() &&
         l.frame_code == K::frame_code() && l.frame_previous == K::frame_previous() &&
         l.frame_prev_instr == K::frame_prev_instr() && l.frame_is_entry == K::frame_is_entry() &&
         l.frame_owner == K::frame_owner() && l.owner_generator == K::owner_generator() &&
         l.var_size == K::var_size() && l.code_adaptive == K::code_adaptive() &&
         l.code_first_traceable == K::code_first_traceable() && l.code_first_line == K::code_first_line() &&
         l.code_qualname == K::code_qualname() && l.code_filename == K::code_filename() &&
         l.code_linetable == K::code_linetable() && l.code_unit_bytes == K::code_unit_bytes() &&
         (size_t{1} << K::code_unit_shift()) == K::code_unit_bytes();
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

// What names a code object: its address and the objects and numbers that tell code reborn at that
// address apart (see code_key), combined linearly; code_key mixes it.
template <typename L>
inline uint64_t code_identity(uintptr_t code) {
  const auto qualname = static_cast<uint64_t>(load<uintptr_t>(code + L::code_qualname()));
  const auto linetable = static_cast<uint64_t>(load<uintptr_t>(code + L::code_linetable()));
  const auto filename = static_cast<uint64_t>(load<uintptr_t>(code + L::code_filename()));
  const auto shape = (static_cast<uint64_t>(load<uint32_t>(code + L::code_first_line())) << 32) ^
                     static_cast<uint64_t>(load<int64_t>(code + L::var_size()));
  return code ^ std::rotl(linetable, 21) ^ std::rotl(qualname, 42) ^ std::rotl(filename, 11) ^ std::rotl(shape, 53);
}

// A code object's key: its address and what names it. CPython reuses a dead code object's
// address for the next one of the same size, and as often the addresses of its name and line
// table (an exec of one source in a loop reuses all three), so the key also takes the file name
// object, the first line and the bytecode's length: code from another file or at another line
// gets another key. (Code equal in all of these but whose file name object died and was reborn
// at the same address with other text still shares the older code's key.)
inline uint64_t code_key(uint64_t identity) {
  const uint64_t x = identity * 0x9e3779b97f4a7c15ull;
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

// Walks the calling thread's Python frames, innermost first, at most `limit` of them, and returns
// how many. Every allocation walks them once without `out` (kRecord false), for the hash (seeded
// with `seed`) of what names each frame — the code's identity, the instruction's offset, the eval
// group — under which the thread's cache keeps the merged stack: no word is made and nothing
// stored. Only a miss walks them again with `out`, for the frames' words; both walks take the same
// frames (nothing changes the chain in between: only this thread changes it, and it is here).
template <typename L, bool kRecord>
int walk_python_frames(WalkedFrame* out, int limit, uint64_t seed, uint64_t& hash) {
  const uintptr_t thread = current_thread_state();
  if (thread == 0 || limit <= 0) return 0;
  const uintptr_t cframe = load<uintptr_t>(thread + L::thread_cframe());
  if (cframe == 0 || (cframe & 7) != 0) return 0;
  uintptr_t frame = load<uintptr_t>(cframe + L::cframe_current_frame());
  int count = 0;
  uint32_t group = 0;
  uint64_t h = seed;
  // Incomplete frames are skipped, not counted: bound the walk itself too. The loop tests what
  // changes where it changes (count only when a frame is taken), and reads the owner only for a
  // frame before its first traceable instruction: this runs for every frame of every allocation.
  int hops = 4 * Config::kMaxStackDepth;
  while (frame != 0 && (frame & 7) == 0) {
    const uintptr_t code = load<uintptr_t>(frame + L::frame_code());
    const uintptr_t instruction = load<uintptr_t>(frame + L::frame_prev_instr());
    const bool entry = load<uint8_t>(frame + L::frame_is_entry()) != 0;
    const uintptr_t previous = load<uintptr_t>(frame + L::frame_previous());
    if (code == 0 || (code & 7) != 0) break;
    const uintptr_t first = code + L::code_adaptive();
    const auto traceable = static_cast<uintptr_t>(load<int>(code + L::code_first_traceable()));
    if (instruction >= first && (instruction >= first + traceable * L::code_unit_bytes() ||
                                 load<uint8_t>(frame + L::frame_owner()) == L::owner_generator())) {
      const uint64_t identity = code_identity<L>(code);
      const uint64_t unit = (instruction - first) >> L::code_unit_shift();
      if constexpr (kRecord) {
        out[count] = {python_word::make(code_key(identity), unit), code, group};
      } else {
        // The instruction and the group (below 4 * kMaxStackDepth < 2^10) keyed, multiplied with
        // the chain so far and the identity (hash_mix.h): the chain is not linear and depends on
        // the frames' order.
        static_assert(4 * Config::kMaxStackDepth < 1 << 10);
        h = fold_multiply(h ^ identity, ((unit << 10) | group) ^ 0x9e3779b97f4a7c15ull);
      }
      if (++count == limit) break;
    }
    group += entry ? 1 : 0;
    frame = previous;
    if (--hops == 0) break;
  }
  hash = h | 1;
  return count;
}

// The walk for the layout found at start-up.
template <bool kRecord>
inline int walk_python_frames(WalkedFrame* out, int limit, uint64_t seed, uint64_t& hash) {
  if (__builtin_expect(g_python.known_layout, 1))
    return walk_python_frames<KnownLayout311, kRecord>(out, limit, seed, hash);
  return walk_python_frames<RuntimeLayout, kRecord>(out, limit, seed, hash);
}

// Interns the native stack with the Python frames in place of the eval loop's frames: the k-th
// _PyEval_EvalFrameDefault frame (innermost first) becomes the Python frames of group k. Python
// frames whose eval frame is beyond the native stack's depth follow it, outermost last.
// `made`: whether this call made the merged stack (new to the table).
uint32_t intern_merged(uint32_t native_id, const WalkedFrame* python, int count, bool& made) {
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
  g_python.known_layout = matches_known_layout(*layout);
  g_python.enabled = true;
  // A native stack ends its chain of C calls at the eval loop, as its merged stack does at the
  // Python frames standing in that frame's place: both share the chain (stack_table.h, "Chains").
  stack_table().set_chain_boundary(g_python.eval_low, g_python.eval_high);
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
  const uint64_t seed = (native_id + 1) * 0x9e3779b97f4a7c15ull;
  // Without a thread's cache (a bad free's report, a thread whose state is gone) nothing is made:
  // a cache made for one call was never freed (64 KiB a call before it grew from 16).
  if (__builtin_expect(thread_cache == nullptr || *thread_cache == nullptr, 0)) {
    const int count = walk_python_frames<true>(python, depth, seed, hash);
    if (count == 0) return native_id;
    if (thread_cache != nullptr) *thread_cache = create_cache();  // probed from the next allocation on
    bool made = false;
    return intern_merged(native_id, python, count, made);
  }
  if (walk_python_frames<false>(nullptr, depth, seed, hash) == 0) return native_id;
  PythonStackCache* cache = *thread_cache;
  PythonStackCache::Entry* set = cache->set(hash);
  unsigned way = 0;
  for (; way < PythonStackCache::kWays; ++way) {
    if (set[way].check == hash) {
      if (__builtin_expect(++cache->window_lookups == PythonStackCache::kWindow, 0)) maybe_grow(*cache);
      return set[way].stack_id;
    }
  }
  uint64_t unused = 0;
  const int count = walk_python_frames<true>(python, depth, seed, unused);
  bool made = false;
  const uint32_t id = count != 0 ? intern_merged(native_id, python, count, made) : native_id;
  cache->window_misses += !made;
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
