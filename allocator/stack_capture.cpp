// Stack capture with a validated per-thread cache (see stack_capture.h).
//
// Unwinding with DWARF CFI costs ~17 ns a frame even in libunwind's fast trace, and a 24-frame
// stack on every malloc and free more than doubles the run time of an allocation-heavy program.
// Most consecutive allocations of a thread come from a call site it used moments ago, at the same
// stack depth, under the same callers. So each thread keeps its recent stacks, keyed by the
// program frame that called into heapkeeper — its return address and stack pointer, read through
// heapkeeper's own frame-pointer chain (this library is built with frame pointers) — together with
// the stack address where each caller's return address was found. A cached stack is reused when
// that entry frame is identical and every recorded slot still holds the same return address (their
// 64-bit hash matches): a load per frame and a multiply per two instead of an unwind step.
//
// An interpreter allocates from tens of thousands of distinct stacks, many of them entering at the
// same (ip, sp) under different callers; the cache is set-associative with 8 ways whose tags share
// a cache line, each entry is two cache lines holding the slot positions and a 64-bit hash of
// what they held, and it grows while it misses often. On python3 with PYTHONMALLOC=malloc that took the miss rate
// from 14% (256 entries of a fixed cache) to 3%. Thousands of those stacks share one entry frame
// and differ only a few callers up, so a stack's set is chosen by its entry frame and the words
// where its first callers' return addresses sat in the first stack cached from there (set_key):
// once warm, the churn's misses went from 1-2% of captures to under 0.1%.
//
// How exact it is: with the same entry (ip, sp) every frame below the first changed caller has the
// same size, so the callers' return-address slots are where they were; a changed caller changes
// its slot's content and forces a full unwind. The unwinder gives return addresses, not where they
// sit, and a frame's uninitialised locals (alloca buffers, arrays) often hold an old copy of a
// return address, left there by an earlier, deeper call from the same call site; the first copy
// above the previous slot is then not always the slot. So the check covers the stack's whole
// "return-address image": every word between the entry and the slots of a few frames past the
// recorded depth (unwound for this only) that holds one of the stack's return addresses, real slot
// or stale copy. The real slots are among them, so a changed caller fails the check; a changed
// stale copy only costs a miss. (Taking the first copy as the slot put about 1 leak group in 200
// of a recursive program under another group's stack.) Where the image ends is found as a chain:
// each frame's slot taken as the first copy of its return address at least 16 bytes above the
// previous one. A chain of copies below the real slots would end it too early: copies in an array
// (a backtrace() buffer) are 8 bytes apart and break the chain; what can still mislead it is the
// layout of an older, deeper call left in a live frame's uninitialised buffer, holding every one of
// the recorded frames' return addresses and the next 4, in order. The stale copies cost every hit
// (the sqlite3 shell's cached stacks checked 43 words where 18 were slots), so a stack hit often has
// them dropped: its real slots, each the word below a caller's canonical frame address, come from a
// stepped unwind at that hit (refine_cached_stack), too slow to take for every stack cached.
//
// Frames of varying size (alloca, variable-length arrays, stack realignment) break the premise:
// the same entry can then sit under callers whose slots moved, and an uninitialised buffer over
// where the old slots were still holds the old return addresses. Such a frame keeps a frame
// pointer, pointing just below its return address, and every call below it either saves that
// pointer on the stack before using the register (push rbp, wherever in its prologue) or leaves
// it in the register down to the call into heapkeeper. Either way it is written afresh by each
// call, between the entry and the frame's slot. So every word there that points just below a
// checked word, and the register at the call if it does, is in the check too (a "link"): a moved
// frame changes it. (Links were first only the word right below a slot, within 8 slots, which a
// callee keeping rbp as a general register, or 8 return addresses copied into a frame, defeated.)
// A cached stack that is wrong is at worst attributed to the stack seen before: never a crash,
// never another thread's.
// Only frames inside the thread's registered stack are cached: coroutine and sigaltstack stacks
// are unwound every time.
//
// A cached stack stands for the code that was mapped when it was unwound. After a dlclose another
// library may be mapped at the same addresses, under the same callers, and every slot would still
// validate: so a cache belongs to one module generation (allocator/unloaded_modules.h), and is
// emptied when the generation moves. That costs one load of a rarely written word per capture.
#define UNW_LOCAL_ONLY
#include "allocator/stack_capture.h"

#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <libunwind.h>
#include <link.h>
#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>

#include "allocator/config.h"
#include "allocator/engine.h"
#include "allocator/hash_mix.h"
#include "allocator/jemalloc_calls.h"
#include "allocator/private_heap.h"
#include "allocator/private_stack.h"
#include "allocator/python_frames.h"
#include "allocator/stack_table.h"
#include "allocator/thread_registry.h"
#include "allocator/unloaded_modules.h"
#include "allocator/unwinder_masks.h"

namespace heapkeeper::alloc {

// One cached stack: two cache lines at the default depth. It keeps where the stack's return
// addresses sat (in words above the entry frame's stack pointer) and a hash of what those words
// held, not the addresses themselves: a hit then reads the tag line, these lines and the stack,
// where comparing against the interned frames read three or four more lines of the stack table.
struct CachedStack {
  uint64_t check;  // the tag plus the terms of every checked word and link (words_sum, links_sum)
  uint32_t stack_id;
  uint8_t words;       // checked words: slot_words[0..words)
  uint8_t links;       // then the links: slot_words[words..words + links)
  uint8_t head_check;  // head_bits of the same over the innermost kHeadSlots: rejects a sibling early
  uint8_t refine_in;   // hits left before the stale copies among the words are dropped; 0: none
  static constexpr uint8_t kRefineAfterHits = 32;
  // uint16_t slot_words[capacity] follows. Checked word i sits at entry_sp + 8 * slot_words[i]; a
  // link is where a saved frame pointer sits, the same way, or kEntryLink for the register.
  static constexpr uint16_t kEntryLink = UINT16_MAX;
};
static_assert(sizeof(CachedStack) == 16);

// Set-associative: a set's tags share one cache line, so a probe touches the line of tags and then
// only the entry that matches. The set is chosen by the entry frame and its first callers'
// return addresses (set_key). The cache starts small and doubles (up to kMaxSets) while it misses
// often: a thread that allocates from a few sites stays small, an interpreter's main thread with
// tens of thousands of distinct stacks gets room for them; from 512 sets up it doubles only when
// two windows in a row missed often (kSustainedSets). It halves again once it has missed almost
// never for a while: python3's imports grow it to 512 sets (0.55 MiB; 1,024 before the rule), which
// its small-live-set churn after them does not need (it settles at 128). Both are done in place.
struct StackCache {
  static constexpr unsigned kWays = 8;
  static constexpr unsigned kFirstSets = 64;
  static constexpr unsigned kMaxSets = 2048;
  static constexpr unsigned kWindow = 1u << 14;          // captures per growth decision
  static constexpr unsigned kGrowMisses = kWindow / 16;  // grow when more than 1 in 16 missed
  // Shrinking: after kQuietWindows windows in a row that missed at most kQuietMisses each, the
  // table halves; if the window after that misses more than kRegretMisses it doubles back, and
  // never shrinks below that size again.
  static constexpr unsigned kQuietMisses = kWindow / 512;
  static constexpr unsigned kQuietWindows = 4;
  static constexpr unsigned kRegretMisses = kWindow / 256;
  // From this size up (0.5 MiB) a table doubles only after two crowded windows in a row: python3's
  // imports, a burst of stacks seen a few times and never again, crowded four windows in a row at
  // 64 to 512 sets and then missed little at 1,024 (350 in a window), which it kept until it
  // shrank, its peak RSS 0.5 MiB higher for it; a churn that needs the room crowds it again.
  static constexpr unsigned kSustainedSets = 512;
  static constexpr unsigned kHeadSlots = 4;  // entries sharing an entry frame differ here
  uint32_t capacity;                         // checked words per entry
  uint32_t sets;
  unsigned set_shift;
  size_t entry_bytes;
  uintptr_t stack_low, stack_high;
  uint64_t* tags;     // sets * kWays; 0: empty way
  uint8_t* next_way;  // per set: the way the next new entry replaces
  uint8_t* last_hit;  // per set: the way that matched last, probed first (siblings share a tag)
  char* entries;
  void* memory;  // the one allocation holding tags, next_way, last_hit and entries
  uint32_t window_captures, window_misses;
  uint32_t quiet_windows;  // windows in a row that missed at most kQuietMisses
  bool was_crowded;        // the last window missed more than kGrowMisses
  uint32_t least_sets;     // what it may shrink to
  bool just_shrunk;        // the last window ended with a halving
  uint32_t generation;     // the module generation every cached stack was unwound in
  uint64_t hits, misses;
  static constexpr unsigned kCallerEntries = 256;  // capture_caller's: 128 sets of two ways
  uintptr_t caller_ip[kCallerEntries];
  uint32_t caller_id[kCallerEntries];
  PythonStackCache* python;  // made when the thread first allocates under Python (python_frames.h)

  // Where the return addresses of the first callers above an entry frame sit, by entry tag
  // (direct-mapped): the set a stack goes to is chosen by its entry tag and the words there
  // (set_key), so the stacks entering at one (ip, sp) under different callers spread over the
  // sets instead of competing for the eight ways of one. Taken from the first stack cached under
  // the tag; a tag keeps its entry until other tags' fills wanting it outnumber its lookups.
  static constexpr unsigned kKeySlots = 3;
  struct EntrySlots {
    uint64_t tag;  // 0: unused
    uint16_t slot[kKeySlots];
    uint8_t count;  // how many of slot[] are set
    uint8_t uses;   // lookups that used it, less fills of other tags wanting it; taken over at 0
  };
  static constexpr unsigned kEntrySlots = 512;
  EntrySlots entry_slots[kEntrySlots];
  uint32_t resting;  // windows left to capture without the cache (it missed anyway)
  static constexpr unsigned kRestWindows = 4;

  // What caching a stack works with, kept here and not on the stack: malloc may run on a 16 KiB
  // thread stack or a small sigaltstack (it took 5 KB more of it in b78bf7d). A signal handler's
  // allocation never captures a stack while its thread is inside the allocator (the engine's
  // reentrancy guard sends it to the signal-safe pool), so one per thread is enough.
  struct Scratch {
    static constexpr unsigned kSetBits = 8;  // an open-addressing set of return addresses
    static constexpr unsigned kSetSlots = 1u << kSetBits;
    static_assert(kSetSlots >= 2 * Config::kMaxStackDepth, "at most half full");
    static constexpr uint32_t kMaxPointers = 256;
    uintptr_t return_addresses[kSetSlots];  // 0: empty
    uint16_t used_slot[Config::kMaxStackDepth];
    uint32_t used_slots;  // emptied at the next use, whatever path the last one left by
    uint16_t image[255];
    uint16_t pointer_at[kMaxPointers], pointer_to[kMaxPointers];
    uint16_t links[kMaxPointers + 1];
  } scratch;

  CachedStack* entry(unsigned index) { return reinterpret_cast<CachedStack*>(entries + index * entry_bytes); }
  static uint16_t* slot_words(CachedStack* e) { return reinterpret_cast<uint16_t*>(e + 1); }
  static const uint16_t* slot_words(const CachedStack* e) { return reinterpret_cast<const uint16_t*>(e + 1); }
};

namespace {

uintptr_t g_self_low = 0, g_self_high = 0;

// glibc's signal return trampoline (__restore_rt: mov $15, %rax; syscall), through which every
// handler it installs returns, and the code of libc that holds it, found at the first look.
constexpr unsigned char kSignalReturn[] = {0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05};
std::atomic<bool> g_libc_code_known{false};
std::atomic<uintptr_t> g_libc_code_low{0}, g_libc_code_high{0};

struct CodeRangeSearch {
  uintptr_t address;  // looked for
  CodeRange found;
};

int find_code_range(dl_phdr_info* info, size_t, void* data) {
  auto* search = static_cast<CodeRangeSearch*>(data);
  uintptr_t low = UINTPTR_MAX, high = 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
    uintptr_t start = info->dlpi_addr + ph.p_vaddr;
    if (start < low) low = start;
    if (start + ph.p_memsz > high) high = start + ph.p_memsz;
  }
  if (search->address >= low && search->address < high) {
    search->found = {low, high};
    return 1;
  }
  return 0;
}

// Whether `address`, a frame of an unwound stack, is glibc's signal return trampoline: the stack
// passes through a handler's signal frame on the same stack. Only for a stack about to be cached.
bool is_signal_return(uintptr_t address) {
  if (!g_libc_code_known.load(std::memory_order_acquire)) {
    // Through a function of glibc's own that nobody interposes (a preloaded library may wrap
    // sigaction, and its address would name that library's code).
    const CodeRange libc = code_range_of(reinterpret_cast<uintptr_t>(&::gnu_get_libc_version));
    g_libc_code_low.store(libc.low, std::memory_order_relaxed);
    g_libc_code_high.store(libc.high, std::memory_order_relaxed);
    g_libc_code_known.store(true, std::memory_order_release);
  }
  const uintptr_t low = g_libc_code_low.load(std::memory_order_relaxed);
  const uintptr_t high = g_libc_code_high.load(std::memory_order_relaxed);
  return address >= low && address <= high - sizeof(kSignalReturn) && high >= sizeof(kSignalReturn) &&
         std::memcmp(reinterpret_cast<const void*>(address), kSignalReturn, sizeof(kSignalReturn)) == 0;
}

// The cache key of an entry frame: never 0, which marks an empty way.
inline uint64_t entry_tag(uintptr_t ip, uintptr_t sp) {
  uint64_t h = (ip ^ (sp << 17) ^ (sp >> 47)) * 0x9e3779b97f4a7c15ull;
  return (h ^ (h >> 31)) | 1;
}

inline uintptr_t load(uintptr_t address) { return *reinterpret_cast<const uintptr_t*>(address); }

inline StackCache::EntrySlots& entry_slots(StackCache* cache, uint64_t tag) {
  return cache->entry_slots[(tag >> 1) % StackCache::kEntrySlots];
}

// The key a stack entering at (tag, sp) is cached under: it chooses the set and is what a way's tag
// holds. The entry tag alone when the tag has no entry_slots (or they lie past the stack's top:
// only a collision of 64-bit tags puts them there), else mixed with the words now at those places.
// Only where a stack is looked for depends on it: whether a cached stack is taken is still decided
// by its check, which covers those words too. Never 0, which marks an empty way. (On python3's
// churn, keyed by the entry tag alone, 86% of the misses came under a tag whose eight ways held
// other stacks of the same entry frame, and they missed on 1-2% of captures in the steady state.)
inline uint64_t set_key(StackCache* cache, uint64_t tag, uintptr_t sp) {
  StackCache::EntrySlots& known = entry_slots(cache, tag);
  if (known.tag != tag || known.count == 0) return tag;
  if (known.uses != UINT8_MAX) ++known.uses;
  if (sp + 8 * uintptr_t{known.slot[known.count - 1]} >= cache->stack_high - 8) return tag;
  uint64_t words = 0;
  for (unsigned i = 0; i < known.count; ++i)
    words = (words ^ load(sp + 8 * uintptr_t{known.slot[i]})) * 0x9e3779b97f4a7c15ull;
  return (tag ^ words ^ (words >> 29)) | 1;
}

// The check sums a term per pair of checked values (the words, then the links), each the 128-bit
// product of the two values, each xored with a key of its position, folded to 64 bits (wyhash's
// "mum"): one multiply for two words where a term per word (hash_mix.h's mix) took one each and
// twice the instructions, the largest part of a hit on python3's churn. Folding the product's high
// half into its low one makes a term depend on every bit of both values, and no sum of such terms
// is linear in them, so differences do not cancel out between terms (a multiply and a rotate per
// word, linear modulo 2^64-1, took return addresses +0xc0 at depth 2 and -0x60 at depth 3 for the
// same check; a plain 64-bit product keeps a high bit's change out of the low half). The keys
// differ by position, so a swap of two callers changes the sum; a value alone at the end is
// paired with a key. Starting from the entry's tag, the check covers the entry frame too. 64
// bits: two different stacks pass for each other about once in 2^64. (fold_multiply: hash_mix.h.)
constexpr uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

struct PositionKeys {
  static constexpr unsigned kCount = 256;  // positions 0..254 (an entry checks at most 255 values), and the pad
  uint64_t key[kCount];
  constexpr PositionKeys() : key() {
    for (unsigned i = 0; i < kCount; ++i) key[i] = splitmix(0x68656170ull + i);
  }
};
constexpr PositionKeys kPositionKeys;

// The term of the values at positions i and i + 1.
inline uint64_t pair_term(uint64_t first, uint64_t second, unsigned i) {
  return fold_multiply(first ^ kPositionKeys.key[i], second ^ kPositionKeys.key[i + 1]);
}

// The term of a value at position i with no partner (the last of an odd count).
inline uint64_t single_term(uint64_t value, unsigned i) {
  return fold_multiply(value ^ kPositionKeys.key[i], kPositionKeys.key[PositionKeys::kCount - 1]);
}

// What link `link` of a cached stack (see CachedStack) reads now.
inline uintptr_t link_value(uint16_t link, const StackProbe& entry) {
  return link == CachedStack::kEntryLink ? entry.rbp : load(entry.sp + 8 * uintptr_t{link});
}

// The checked words of a cached stack from position `from` (even) to `to`, as now on the stack.
inline uint64_t words_sum(const uint16_t* slot, uint32_t from, uint32_t to, uintptr_t sp) {
  const auto word = [sp](uint16_t at) { return load(sp + 8 * uintptr_t{at}); };
  const uint16_t* const at = slot + from;
  const uint64_t* const key = kPositionKeys.key + from;
  // Counted pairs, indexed from one counter: the loop's control is an increment and a compare
  // (two pointers stepped and their distance compared took four more instructions a pair, on the
  // ~9 pairs of an interpreter's allocation).
  const size_t pairs = (to - from) / 2;
  uint64_t sum = 0;
  for (size_t i = 0; i < pairs; ++i)
    sum += fold_multiply(word(at[2 * i]) ^ key[2 * i], word(at[2 * i + 1]) ^ key[2 * i + 1]);
  if (((to - from) & 1) != 0)
    sum += fold_multiply(word(at[2 * pairs]) ^ key[2 * pairs], kPositionKeys.key[PositionKeys::kCount - 1]);
  return sum;
}

// The links of a cached stack, slot[words..words + links), as now.
inline uint64_t links_sum(const uint16_t* slot, uint32_t words, uint32_t links, const StackProbe& entry) {
  uint64_t sum = 0;
  const uint32_t end = words + links;
  uint32_t i = words;
  for (; i + 1 < end; i += 2) sum += pair_term(link_value(slot[i], entry), link_value(slot[i + 1], entry), i);
  if (i < end) sum += single_term(link_value(slot[i], entry), i);
  return sum;
}

inline uint8_t head_bits(uint64_t hash) { return static_cast<uint8_t>(hash >> 56); }

// The program's frame that called into heapkeeper, found through our own frame-pointer chain.
struct EntryFrame {
  uintptr_t ip = 0, sp = 0, rbp = 0;
};

// The program's frame that called into heapkeeper, found through our own frame-pointer chain.
__attribute__((noinline)) EntryFrame walk_to_entry_frame(uintptr_t stack_low, uintptr_t stack_high) {
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

// The program's frame that called into heapkeeper: right above the exported function's frame when
// that recorded one (EntryFrameScope), which is every allocation call from the program.
inline EntryFrame find_entry_frame(uintptr_t stack_low, uintptr_t stack_high) {
  const uintptr_t hook = tls_thread.entry_frame;
  if (__builtin_expect(hook >= stack_low && hook + 16 <= stack_high && (hook & 7) == 0, 1)) {
    const uintptr_t ra = load(hook + 8);
    if (__builtin_expect(!is_heapkeeper_code(ra), 1)) return {ra, hook + 16, load(hook)};
  }
  return walk_to_entry_frame(stack_low, stack_high);
}

// Frames unwound past the recorded depth when a stack is cached, only to bound its image.
constexpr int kAnchorFrames = 4;

// libunwind's fast trace (unw_backtrace) keeps a per-thread cache of frame descriptions: 256 KiB
// that it maps and fills on the thread's first call, 64 page faults and about a quarter of a
// millisecond, more than all the rest a process making one allocation pays for it (issue #12).
// Stepping with unw_step gives the same frames without that cache (it is what unw_backtrace falls
// back to when its fast trace fails), at about 1 us a frame: it blocks signals around every step.
// So a thread's first unwinds step, and the fast trace serves the rest: a process with few
// distinct stacks never makes the cache, and one with many pays one stepped unwind more.
constexpr uint32_t kSteppedUnwinds = 1;
constinit thread_local uint32_t tls_unwinds __attribute__((tls_model("initial-exec"))) = 0;

// unw_backtrace's contract, by stepping: out[0] is the return address into this function's caller.
__attribute__((noinline)) int stepped_backtrace(void** out, int size) {
  unw_context_t context;
  unw_cursor_t cursor;
  if (unw_getcontext(&context) != 0 || unw_init_local(&cursor, &context) != 0) return 0;
  int n = 0;
  unw_word_t ip = 0;
  while (n < size && unw_step(&cursor) > 0 && unw_get_reg(&cursor, UNW_REG_IP, &ip) == 0) {
    out[n++] = reinterpret_cast<void*>(ip);
  }
  return n;
}

// The stack room an unwind needs below the allocation call: libunwind's cursor and context and its
// DWARF machinery, about 9 KiB at their deepest (measured on a PTHREAD_STACK_MIN thread inside
// vfprintf), with a margin. A thread with less left gets the allocation's caller alone: a short
// stack in the report, where overflowing its stack would have killed the program.
constexpr uintptr_t kUnwindRoom = uintptr_t{16} * 1024;
// The stack room Python frames need below a capture (capture_stack): their walk's frames (3 KiB),
// the native stack's view and the merged copy (2 KiB), and the merged stack's interning (2 KiB),
// measured at 6.4 KiB on top of the native capture in a handler, with a margin. A capture with less
// records the native stack alone.
constexpr uintptr_t kPythonFramesRoom = uintptr_t{10} * 1024;

// Off the thread's stack: whether this frame is on the thread's alternate signal stack (a
// handler's) with less than kUnwindRoom of it left below; if so, `low` and `high` become that
// stack's bounds. The sigaltstack wrapper recorded where it is (no system call here; one set with
// a raw system call is not known). Crash handlers run on 8 KiB ones. Other stacks (coroutines')
// say no: their room is not known.
inline bool short_of_alternate_stack(uintptr_t here, uintptr_t& low, uintptr_t& high, uintptr_t room) {
  const uintptr_t start = tls_thread.alt_stack_low, end = tls_thread.alt_stack_high;
  if (here < start || here >= end || here - start >= room) return false;
  low = start;
  high = end;
  return true;
}

// Whether this frame lies in the stack [low, high) with less than kUnwindRoom of it left below,
// or on a small alternate signal stack likewise (then [low, high) becomes that stack).
inline bool short_of_stack(uintptr_t& low, uintptr_t& high, uintptr_t room = kUnwindRoom) {
  const auto here = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  if (here >= low && here < high) return here - low < room;
  return high != 0 && short_of_alternate_stack(here, low, high, room);
}

// How much stack an unwind has where this frame is. kShort: less than kUnwindRoom left on the
// thread's own stack or its alternate signal stack (then [low, high) is that stack); kUnknown: off
// every stack whose room is known, a coroutine's (heapkeeper's private stack is known).
enum class StackRoom { kEnough, kShort, kUnknown };
inline StackRoom stack_room(const ThreadState& state, uintptr_t& low, uintptr_t& high) {
  if (short_of_stack(low, high)) return StackRoom::kShort;
  const auto here = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  if (state.stack_high == 0 || (here >= state.stack_low && here < state.stack_high)) return StackRoom::kEnough;
  if (here >= tls_thread.alt_stack_low && here < tls_thread.alt_stack_high) return StackRoom::kEnough;
  return on_private_stack(state, here) ? StackRoom::kEnough : StackRoom::kUnknown;
}

// The allocation's caller alone, found in [low, high): what a capture records where a full unwind
// cannot run.
int caller_alone(uintptr_t low, uintptr_t high, uintptr_t* out, int depth) {
  const EntryFrame entry = find_entry_frame(low, high);
  if (entry.sp == 0 || depth < 1) return 0;
  out[0] = entry.ip;
  return 1;
}

// unw_backtrace's contract for a stack of unknown room: the context is taken here, on the
// program's stack, and stepped on heapkeeper's private stack (private_stack.h). -1 when there is
// no private stack to be had.
struct PrivateUnwind {
  unw_context_t* context;
  void** out;
  int size;
  int count;
};
void step_from_context(void* argument) {
  auto* job = static_cast<PrivateUnwind*>(argument);
  prepare_unwinder();
  unw_cursor_t cursor;
  if (unw_init_local(&cursor, job->context) != 0) return;
  unw_word_t ip = 0;
  while (job->count < job->size && unw_step(&cursor) > 0 && unw_get_reg(&cursor, UNW_REG_IP, &ip) == 0)
    job->out[job->count++] = reinterpret_cast<void*>(ip);
}
__attribute__((noinline)) int backtrace_on_private_stack(ThreadState& state, void** out, int size) {
  unw_context_t context;
  if (unw_getcontext(&context) != 0) return 0;
  PrivateUnwind job{&context, out, size, 0};
  return run_on_private_stack(state, step_from_context, &job) ? job.count : -1;
}

// Unwinds with libunwind's fast trace; returns the number of program frames copied to `out`.
// heapkeeper's frames are left out wherever they are: below the program's call into the
// allocator, and in the middle of a stack, where an interposed function calls the original
// (glibc's pthread_create allocating under heapkeeper's pthread_create, a thread's start routine
// under heapkeeper's trampoline), so a stack reads as it would without heapkeeper.
int unwind_program_frames(uintptr_t* out, int depth) {
  ThreadState* state = tls_thread.state;
  uintptr_t low = state != nullptr ? state->stack_low : 0, high = state != nullptr ? state->stack_high : 0;
  const StackRoom room = state != nullptr ? stack_room(*state, low, high) : StackRoom::kEnough;
  if (__builtin_expect(room == StackRoom::kShort, 0)) return caller_alone(low, high, out, depth);
  constexpr int kOwnFramesMax = 8;
  void* raw[Config::kMaxStackDepth + kAnchorFrames + kOwnFramesMax];
  int n = 0;
  if (__builtin_expect(room == StackRoom::kUnknown, 0)) {
    n = backtrace_on_private_stack(*state, raw, depth + kOwnFramesMax);
    if (n < 0) return caller_alone(0, UINTPTR_MAX, out, depth);  // no private stack to be had
  } else {
    prepare_unwinder();  // only with room for an unwind: its set-up needs less
    n = tls_unwinds < kSteppedUnwinds ? (++tls_unwinds, stepped_backtrace(raw, depth + kOwnFramesMax))
                                      : unw_backtrace(raw, depth + kOwnFramesMax);
  }
  int count = 0;
  for (int i = 0; i < n && count < depth; ++i) {
    const auto frame = reinterpret_cast<uintptr_t>(raw[i]);
    if (!is_heapkeeper_code(frame)) out[count++] = frame;
  }
  return count;
}

// The stack of the caller, unwound and interned: what a capture does without the cache.
__attribute__((noinline)) uint32_t intern_unwound(int depth, uint32_t generation) {
  uintptr_t ips[Config::kMaxStackDepth];
  const int count = unwind_program_frames(ips, depth);
  if (count == 0) return StackTable::kNoStack;
  return stack_table().intern(ips, static_cast<uint32_t>(count), generation);
}

}  // namespace

namespace {

void* allocate_internal(size_t bytes) {
  return je::mallocx(
      bytes, MALLOCX_ARENA(private_heap().internal_arena()) | MALLOCX_TCACHE_NONE | MALLOCX_ZERO | MALLOCX_LG_ALIGN(6));
}

// (Re)sizes the cache's table to `sets` sets, all ways empty. False (table unchanged) when the
// internal arena cannot provide the memory.
bool size_table(StackCache* cache, uint32_t sets, bool keep_entries) {
  const size_t tag_bytes = size_t{sets} * StackCache::kWays * sizeof(uint64_t);
  const size_t way_bytes = (sets + 63) & ~size_t{63};
  const size_t bytes = tag_bytes + 2 * way_bytes + size_t{sets} * StackCache::kWays * cache->entry_bytes;
  void* memory = allocate_internal(bytes);
  if (memory == nullptr) return false;
  StackCache old = *cache;
  cache->memory = memory;
  cache->tags = static_cast<uint64_t*>(memory);
  cache->next_way = static_cast<uint8_t*>(memory) + tag_bytes;
  cache->last_hit = static_cast<uint8_t*>(memory) + tag_bytes + way_bytes;
  cache->entries = static_cast<char*>(memory) + tag_bytes + 2 * way_bytes;
  cache->sets = sets;
  cache->set_shift = 64 - static_cast<unsigned>(__builtin_ctz(sets));
  if (old.memory == nullptr) return true;
  if (keep_entries) {
    // Rehash what the old table held: a growing cache keeps its stacks instead of missing on
    // each of them once more.
    for (unsigned index = 0; index < old.sets * StackCache::kWays; ++index) {
      const uint64_t tag = old.tags[index];
      if (tag == 0) continue;
      const unsigned set = static_cast<unsigned>(tag >> cache->set_shift);
      const unsigned way = cache->next_way[set]++ % StackCache::kWays;
      cache->tags[set * StackCache::kWays + way] = tag;
      cache->last_hit[set] = static_cast<uint8_t>(way);
      std::memcpy(cache->entry(set * StackCache::kWays + way), old.entry(index), cache->entry_bytes);
    }
  }
  je::dallocx(old.memory, MALLOCX_TCACHE_NONE);
  return true;
}

// Doubles the table where it is, when the internal arena can extend its memory in place: old set
// i's ways go to new sets 2i and 2i+1 (a set is its key's top bits). Growing by a new table beside
// the old one raised the peak RSS by the old one's size (0.55 MiB when python3's imports take it
// from 512 sets to 1,024). The entries are moved first, from the last set: each lands above the old
// entries not yet moved (checked for set 0; false, nothing changed, where it would not hold or the
// memory cannot grow); then the tags, from the last set, each pair of new sets above the old sets
// not yet read; then the ways' bytes, over old entries all moved by then.
bool double_table_in_place(StackCache* cache) {
  constexpr unsigned kWays = StackCache::kWays;
  const uint32_t sets = cache->sets, twice = sets * 2;
  const size_t entry_bytes = cache->entry_bytes;
  const size_t tag_bytes = size_t{sets} * kWays * sizeof(uint64_t), way_bytes = (sets + 63) & ~size_t{63};
  const size_t new_tag_bytes = size_t{twice} * kWays * sizeof(uint64_t), new_way_bytes = (twice + 63) & ~size_t{63};
  const size_t old_entries = tag_bytes + 2 * way_bytes, new_entries = new_tag_bytes + 2 * new_way_bytes;
  const size_t new_bytes = new_entries + size_t{twice} * kWays * entry_bytes;
  if (new_entries - old_entries < kWays * entry_bytes) return false;
  if (je::xallocx(cache->memory, new_bytes, 0, MALLOCX_ARENA(private_heap().internal_arena()) | MALLOCX_TCACHE_NONE) <
      new_bytes)
    return false;
  char* const base = static_cast<char*>(cache->memory);
  const unsigned shift = cache->set_shift - 1;
  // Where old set i's way w goes: new set 2i or 2i+1 by the key's next bit, ways in their order.
  const auto place = [&](const uint64_t* old_tags, unsigned* to) {
    unsigned filled[2] = {0, 0};
    for (unsigned w = 0; w < kWays; ++w) {
      if (old_tags[w] == 0) continue;
      const unsigned half = static_cast<unsigned>(old_tags[w] >> shift) & 1;
      to[w] = half * kWays + filled[half]++;
    }
  };
  // The entries first: the new tags would cover the old entries of the first sets.
  for (uint32_t i = sets; i-- > 0;) {
    const uint64_t* old_tags = cache->tags + size_t{i} * kWays;
    unsigned to[kWays];
    place(old_tags, to);
    for (unsigned w = 0; w < kWays; ++w) {
      if (old_tags[w] == 0) continue;
      std::memcpy(base + new_entries + (size_t{2} * i * kWays + to[w]) * entry_bytes,
                  base + old_entries + (size_t{i} * kWays + w) * entry_bytes, entry_bytes);
    }
  }
  for (uint32_t i = sets; i-- > 0;) {
    uint64_t old_tags[kWays];
    std::memcpy(old_tags, cache->tags + size_t{i} * kWays, sizeof old_tags);
    unsigned to[kWays];
    place(old_tags, to);
    uint64_t new_tags[2 * kWays] = {};
    for (unsigned w = 0; w < kWays; ++w) {
      if (old_tags[w] != 0) new_tags[to[w]] = old_tags[w];
    }
    std::memcpy(cache->tags + size_t{2} * i * kWays, new_tags, sizeof new_tags);
  }
  cache->sets = twice;
  cache->set_shift = shift;
  cache->next_way = reinterpret_cast<uint8_t*>(base + new_tag_bytes);
  cache->last_hit = reinterpret_cast<uint8_t*>(base + new_tag_bytes + new_way_bytes);
  cache->entries = base + new_entries;
  std::memset(cache->last_hit, 0, new_way_bytes);
  for (uint32_t j = 0; j < twice; ++j) {
    unsigned used = 0;
    while (used < kWays && cache->tags[size_t{j} * kWays + used] != 0) ++used;
    cache->next_way[j] = static_cast<uint8_t>(used % kWays);
  }
  return true;
}

// Halves the table where it is: new set j holds four ways of each of old sets 2j and 2j+1, the way
// that matched last and the three filled last. Then the freed tail goes back to the internal
// arena. In place, since a new table beside the old one would raise the peak RSS by its size,
// where halving was to lower it. In three passes, each reading only what the ones before left:
// each old set's kept ways are moved to its ways 0-3 (reading its last_hit and next_way); the tags
// are packed to the front of the tags; then the entries, each to a lower address than any not yet
// moved (checked for set 0; false, nothing changed, where it would not hold).
bool halve_table(StackCache* cache) {
  constexpr unsigned kWays = StackCache::kWays, kKept = kWays / 2;
  const uint32_t sets = cache->sets, half = sets / 2;
  if (half < StackCache::kFirstSets) return false;
  const size_t entry_bytes = cache->entry_bytes;
  const size_t tag_bytes = size_t{sets} * kWays * sizeof(uint64_t), way_bytes = (sets + 63) & ~size_t{63};
  const size_t new_tag_bytes = size_t{half} * kWays * sizeof(uint64_t), new_way_bytes = (half + 63) & ~size_t{63};
  const size_t old_entries = tag_bytes + 2 * way_bytes, new_entries = new_tag_bytes + 2 * new_way_bytes;
  if (kWays * entry_bytes > old_entries - new_entries) return false;
  char* const base = static_cast<char*>(cache->memory);
  for (uint32_t set = 0; set < sets; ++set) {
    uint8_t at[kWays], where[kWays];  // position -> original way, original way -> position
    for (unsigned w = 0; w < kWays; ++w) at[w] = where[w] = static_cast<uint8_t>(w);
    unsigned wanted[kKept];
    unsigned count = 0;
    wanted[count++] = cache->last_hit[set] % kWays;
    for (unsigned back = 1; back <= kWays && count < kKept; ++back) {
      const unsigned way = (cache->next_way[set] + kWays - back) % kWays;
      if (way != wanted[0]) wanted[count++] = way;
    }
    for (unsigned p = 0; p < kKept; ++p) {
      const unsigned from = where[wanted[p]];
      if (from == p) continue;
      std::swap(cache->tags[set * kWays + p], cache->tags[set * kWays + from]);
      // By words: an entry is up to 544 bytes, and malloc may run on a small stack.
      auto* x = reinterpret_cast<uint64_t*>(cache->entry(set * kWays + p));
      auto* y = reinterpret_cast<uint64_t*>(cache->entry(set * kWays + from));
      for (size_t i = 0; i < entry_bytes / sizeof(uint64_t); ++i) std::swap(x[i], y[i]);
      where[at[p]] = static_cast<uint8_t>(from);
      where[at[from]] = static_cast<uint8_t>(p);
      std::swap(at[p], at[from]);
    }
  }
  const auto old_way = [](uint32_t j, unsigned k) { return (2 * j + k / kKept) * kWays + k % kKept; };
  for (uint32_t j = 0; j < half; ++j) {
    uint64_t kept[kWays];
    for (unsigned k = 0; k < kWays; ++k) kept[k] = cache->tags[old_way(j, k)];
    std::memcpy(cache->tags + size_t{j} * kWays, kept, sizeof kept);
  }
  for (uint32_t j = 0; j < half; ++j) {
    for (unsigned k = 0; k < kWays; ++k) {
      std::memmove(base + new_entries + (size_t{j} * kWays + k) * entry_bytes,
                   base + old_entries + size_t{old_way(j, k)} * entry_bytes, entry_bytes);
    }
  }
  cache->sets = half;
  cache->set_shift += 1;
  cache->next_way = reinterpret_cast<uint8_t*>(base + new_tag_bytes);
  cache->last_hit = reinterpret_cast<uint8_t*>(base + new_tag_bytes + new_way_bytes);
  cache->entries = base + new_entries;
  // Each set's way 0 matched last; the next fill replaces way 3, the oldest kept of set 2j.
  std::memset(cache->next_way, kKept - 1, new_way_bytes);
  std::memset(cache->last_hit, 0, new_way_bytes);
  je::xallocx(cache->memory, new_entries + size_t{half} * kWays * entry_bytes, 0,
              MALLOCX_ARENA(private_heap().internal_arena()) | MALLOCX_TCACHE_NONE);
  return true;
}

// Drops every cached stack (and cached caller): a library they may run through was unloaded.
void forget_cached_stacks(StackCache* cache, uint32_t generation) {
  std::memset(cache->tags, 0, size_t{cache->sets} * StackCache::kWays * sizeof(uint64_t));
  std::memset(cache->entry_slots, 0, sizeof cache->entry_slots);
  for (unsigned i = 0; i < StackCache::kCallerEntries; ++i) cache->caller_ip[i] = 0;
  cache->generation = generation;
}

// Doubles the table when the last window of captures missed often.
// Every kWindow captures: a cache that misses often grows; one that still misses more often than
// not at its largest rests (is neither looked up nor filled) for kRestWindows windows, since a
// miss costs more than unwinding alone (a program making ever new stacks: a tree built
// recursively took 1.35x the time of 2f9bd41's cache, and 1.5x that of none).
void maybe_grow(StackCache* cache) {
  const bool crowded = cache->window_misses > StackCache::kGrowMisses;
  const bool hopeless = cache->window_misses > StackCache::kWindow / 2;
  const bool regret = cache->just_shrunk && cache->window_misses > StackCache::kRegretMisses;
  cache->quiet_windows = cache->window_misses <= StackCache::kQuietMisses ? cache->quiet_windows + 1 : 0;
  cache->window_captures = cache->window_misses = 0;
  cache->just_shrunk = false;
  const bool sustained = cache->was_crowded || cache->sets < StackCache::kSustainedSets;
  cache->was_crowded = crowded;
  if (cache->resting > 0) {
    --cache->resting;
  } else if ((crowded || regret) && cache->sets < StackCache::kMaxSets) {
    if (!sustained && !regret) return;  // one more window first
    if ((double_table_in_place(cache) || size_table(cache, cache->sets * 2, true)) && regret)
      cache->least_sets = cache->sets;
    cache->was_crowded = false;  // the larger table has to crowd twice itself
  } else if (hopeless) {
    cache->resting = StackCache::kRestWindows;
  } else if (cache->quiet_windows >= StackCache::kQuietWindows && cache->sets > cache->least_sets) {
    cache->just_shrunk = halve_table(cache);
    cache->quiet_windows = 0;
  }
}

}  // namespace

StackCache* create_stack_cache() {
  const uint32_t capacity = static_cast<uint32_t>(config().stack_depth);
  void* memory = allocate_internal(sizeof(StackCache));
  if (memory == nullptr) return nullptr;
  auto* cache = new (memory) StackCache();
  // Room for the real slots and as many stale copies and links (at most 255 words): whole lines.
  cache->capacity = 2 * capacity + 8 < 255 ? 2 * capacity + 8 : 255;
  cache->entry_bytes = (sizeof(CachedStack) + cache->capacity * sizeof(uint16_t) + 63) & ~size_t{63};
  cache->least_sets = StackCache::kFirstSets;
  if (!size_table(cache, StackCache::kFirstSets, false)) {
    je::dallocx(memory, MALLOCX_TCACHE_NONE);
    return nullptr;
  }
  return cache;
}

void reset_stack_cache(StackCache* cache, uintptr_t stack_low, uintptr_t stack_high) {
  if (cache == nullptr) return;
  if (cache->sets != StackCache::kFirstSets) {
    size_table(cache, StackCache::kFirstSets, false);  // a new thread starts small again
  } else {
    std::memset(cache->tags, 0, size_t{cache->sets} * StackCache::kWays * sizeof(uint64_t));
  }
  cache->stack_low = stack_low;
  cache->stack_high = stack_high;
  cache->hits = cache->misses = 0;
  cache->resting = 0;
  cache->window_captures = cache->window_misses = 0;
  cache->quiet_windows = 0;
  cache->was_crowded = false;
  cache->least_sets = StackCache::kFirstSets;
  cache->just_shrunk = false;
  for (unsigned i = 0; i < StackCache::kCallerEntries; ++i) cache->caller_ip[i] = 0;
  std::memset(cache->entry_slots, 0, sizeof cache->entry_slots);
  cache->generation = module_generation();
  reset_python_stack_cache(cache->python);
}

bool initialize_stack_capture() {
  const CodeRange self = code_range_of(reinterpret_cast<uintptr_t>(&capture_stack));
  g_self_low = self.low;
  g_self_high = self.high;
  // libc's code range, now: signal_frame_between runs in signal handlers, where the loader's
  // lock that finding it takes may be held by the code they interrupted.
  is_signal_return(0);
  locate_unwinder();
  // libunwind cannot switch its caching policy under a thread that is unwinding with the global
  // one: that thread takes the global cache's lock, blocking every signal, and releases both only
  // if the policy is still global when it is done. heapkeeper's own unwinds all come after the
  // switch (prepare_unwinder); the program's may not. So the switch waits for the first unwind
  // only while no other object needs libunwind: one that does (a profiler linking it) gets it now,
  // before the program runs, as every process did before. A program that looks libunwind up with
  // dlsym gets it at that lookup (prepare_unwinder_for_lookup), before it can unwind.
  if (unwinder_used_by_others()) prepare_unwinder();
  return true;
}

std::atomic<bool> g_unwinder_prepared{false};

void prepare_unwinder_slow() {
  // Any thread may get here first, and more than one at once: libunwind initialises itself once
  // under its own lock (signals blocked), and a second call finds the policy set and returns.
  unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
  g_unwinder_prepared.store(true, std::memory_order_release);
}

void prepare_unwinder_for_lookup(const char* name) noexcept {
  // Not for heapkeeper's own look-ups (the guard is held), nor for those made while the set-up
  // runs: a library preloaded ahead of heapkeeper that wraps libunwind looks the original up then.
  if (g_unwinder_prepared.load(std::memory_order_acquire) || name == nullptr || tls_thread.guard != 0) return;
  // libunwind's names: unw_backtrace and the like, and its local and generic entry points
  // (_ULx86_64_step, _Ux86_64_getcontext...).
  if (std::strncmp(name, "unw_", 4) != 0 && std::strncmp(name, "_U", 2) != 0) return;
  run_guarded([] { prepare_unwinder(); });
}

CodeRange code_range_of(uintptr_t address) {
  CodeRangeSearch search{address, {}};
  dl_iterate_phdr(find_code_range, &search);
  return search.found;
}

bool is_heapkeeper_code(uintptr_t address) { return address >= g_self_low && address < g_self_high; }

StackProbe probe_stack_cache(StackCache* cache) {
  StackProbe probe;
  if (cache->stack_high == 0) return probe;
  const EntryFrame entry = find_entry_frame(cache->stack_low, cache->stack_high);
  probe.ip = entry.ip;
  probe.sp = entry.sp;
  probe.rbp = entry.rbp;
  probe.tag = entry_tag(entry.ip, entry.sp);
  probe.key = entry.sp != 0 ? set_key(cache, probe.tag, entry.sp) : probe.tag;
  probe.set = static_cast<unsigned>(probe.key >> cache->set_shift);
  __builtin_prefetch(cache->tags + size_t{probe.set} * StackCache::kWays);
  __builtin_prefetch(cache->entry(probe.set * StackCache::kWays + cache->last_hit[probe.set]));
  return probe;
}

bool signal_frame_between(uintptr_t low, uintptr_t high, uintptr_t readable_end) {
  if (!g_libc_code_known.load(std::memory_order_acquire)) return false;
  const uintptr_t code_low = g_libc_code_low.load(std::memory_order_relaxed);
  const uintptr_t code_high = g_libc_code_high.load(std::memory_order_relaxed);
  // The kernel enters a handler with its return address, the handler's restorer, on top of the
  // frame's ucontext, whose saved stack pointer is where the interrupted code stood: above the
  // frame, and at most at `high` when that code ran under heapkeeper's guard. The restorer is
  // glibc's (__restore_rt) for every handler glibc's sigaction installed; a program that installs
  // its own with rt_sigaction has its own, and there the interrupted instruction names the frame:
  // heapkeeper's code, which is what runs under the guard, with its fpstate between the frame and
  // the interrupted stack pointer. A stale copy (an earlier handler's frame, since overwritten in
  // part) rarely keeps such a context.
  constexpr uintptr_t kContextEnd = 8 + sizeof(ucontext_t);
  for (uintptr_t at = (low + 7) & ~uintptr_t{7}; at + 8 <= high && at + kContextEnd <= readable_end; at += 8) {
    const auto* context = reinterpret_cast<const ucontext_t*>(at + 8);
    const auto interrupted = static_cast<uintptr_t>(context->uc_mcontext.gregs[REG_RSP]);
    if (interrupted <= at || interrupted > high) continue;
    const uintptr_t word = load(at);
    if (word >= code_low && code_high >= code_low + sizeof(kSignalReturn) &&
        word <= code_high - sizeof(kSignalReturn) &&
        std::memcmp(reinterpret_cast<const void*>(word), kSignalReturn, sizeof(kSignalReturn)) == 0)
      return true;
    const auto instruction = static_cast<uintptr_t>(context->uc_mcontext.gregs[REG_RIP]);
    const auto fpstate = reinterpret_cast<uintptr_t>(context->uc_mcontext.fpregs);
    if (is_heapkeeper_code(instruction) && fpstate > at && fpstate < interrupted) return true;
  }
  return false;
}

namespace {

// The cached stack the probed entry frame's stack is, or null. Apart from the miss path (which
// unwinds, interns and caches, with a frame of its own four times the size): a hit then needs none
// of the registers that path spills.
inline CachedStack* find_cached_stack(StackCache* cache, const StackProbe& entry) {
  const uint64_t tag = entry.tag;
  const uint64_t key = entry.key;
  const unsigned set = entry.set;
  const uint64_t* tags = cache->tags + size_t{set} * StackCache::kWays;
  const unsigned first = cache->last_hit[set];
  for (unsigned probe = 0; probe < StackCache::kWays; ++probe) {
    const unsigned way = (first + probe) % StackCache::kWays;
    if (tags[way] != key) continue;
    CachedStack* candidate = cache->entry(set * StackCache::kWays + way);
    // Every caller's return address still in its slot. Entries sharing an entry frame differ in
    // their innermost callers: those are checked first, against 16 bits; then the rest.
    const uint16_t* slot = StackCache::slot_words(candidate);
    const uint32_t words = candidate->words;
    const uint32_t head = words < StackCache::kHeadSlots ? words : StackCache::kHeadSlots;
    uint64_t hash = tag + words_sum(slot, 0, head, entry.sp);
    if (head_bits(hash) != candidate->head_check) continue;
    hash += words_sum(slot, head, words, entry.sp) + links_sum(slot, words, candidate->links, entry);
    if (hash == candidate->check) {
      cache->last_hit[set] = static_cast<uint8_t>(way);
      return candidate;
    }
  }
  return nullptr;
}

uint32_t capture_uncached(StackCache* cache, int depth, const StackProbe& entry, uint32_t generation);
void refine_cached_stack(StackCache* cache, CachedStack* cached, const StackProbe& entry);

inline uint32_t capture_probed(StackCache* cache, int depth, const StackProbe& entry, uint32_t generation) {
  if (entry.sp != 0) {
    if (CachedStack* hit = find_cached_stack(cache, entry)) {
      const uint32_t id = hit->stack_id;  // read first: growing frees the table it is in
      ++cache->hits;
      if (__builtin_expect(hit->refine_in != 0, 0) && --hit->refine_in == 0) refine_cached_stack(cache, hit, entry);
      if (++cache->window_captures == StackCache::kWindow) maybe_grow(cache);
      return id;
    }
  }
  return capture_uncached(cache, depth, entry, generation);
}

uint32_t capture_native_stack(StackCache* cache, int depth, const StackProbe* given) {
  // Read before unwinding: the frames are then at least as new as the generation.
  const uint32_t generation = module_generation();
  // Short of stack: the caller alone (unwind_program_frames), never cached for the deeper
  // captures from the same place. (The cache holds the thread's stack bounds.)
  uintptr_t low = cache != nullptr ? cache->stack_low : 0, high = cache != nullptr ? cache->stack_high : 0;
  if (cache == nullptr || cache->stack_high == 0 || depth != config().stack_depth || short_of_stack(low, high)) {
    return intern_unwound(depth, generation);
  }
  if (__builtin_expect(cache->generation != generation, 0)) forget_cached_stacks(cache, generation);
  if (__builtin_expect(cache->resting != 0, 0)) {
    if (++cache->window_captures == StackCache::kWindow) maybe_grow(cache);
    return intern_unwound(depth, generation);
  }
  if (__builtin_expect(given == nullptr, 0)) {
    const StackProbe probed = probe_stack_cache(cache);
    return capture_probed(cache, depth, probed, generation);
  }
  return capture_probed(cache, depth, *given, generation);
}

// The highest word a cached stack entering at `sp` may check: one its 16-bit word offsets reach,
// below the top of the thread's stack.
inline uintptr_t highest_checkable(uintptr_t sp, uintptr_t stack_high) {
  const uintptr_t reach = sp + 8 * uintptr_t{CachedStack::kEntryLink - 1};
  return reach < stack_high - 8 ? reach : stack_high - 8;
}

// Where the return addresses of recorded frames 1 to count - 1 really sit, in words above the entry
// frame's stack pointer: the word below each caller's canonical frame address, which libunwind's
// stepped unwind gives as the stack pointer of the frame it returns to. The image scan cannot tell
// a frame's slot from an older copy of the same return address left in an uninitialised buffer
// below it, so it checks every copy; the unwinder knows. False when the unwind does not come
// through the entry frame to the recorded frames as captured, passes a signal frame, or finds a
// slot that does not hold its return address or lies outside [entry, stack_high): the image is
// checked then. Only on a miss that caches a stack with stale copies (it steps at about 0.1 us a
// frame once libunwind's per-thread cache knows the code, up to 3 us cold).
__attribute__((noinline)) bool find_real_slots(const StackProbe& entry, const uintptr_t* ips, int count,
                                               uintptr_t stack_high, uint16_t* real) {
  prepare_unwinder();
  unw_context_t context;
  unw_cursor_t cursor;
  if (unw_getcontext(&context) != 0 || unw_init_local(&cursor, &context) != 0) return false;
  constexpr int kOwnFramesMax = 16;  // heapkeeper's frames between here and the entry frame
  int k = -1;                        // the recorded frame the cursor is at; -1: not there yet
  uintptr_t previous = entry.sp - 8;
  const uintptr_t top = highest_checkable(entry.sp, stack_high);
  for (int steps = 0; steps < kOwnFramesMax + count; ++steps) {
    if (unw_step(&cursor) <= 0) return false;
    unw_word_t ip = 0, sp = 0;
    if (unw_get_reg(&cursor, UNW_REG_IP, &ip) != 0 || unw_get_reg(&cursor, UNW_REG_SP, &sp) != 0) return false;
    if (k < 0) {
      if (ip != entry.ip) continue;
      if (sp != entry.sp) return false;
      k = 0;
      continue;
    }
    if (unw_is_signal_frame(&cursor) > 0) return false;
    if (++k == count || ip != ips[k]) return false;
    const uintptr_t slot = sp - 8;
    if (slot <= previous || slot > top || (slot & 7) != 0 || load(slot) != ips[k]) return false;
    real[k - 1] = static_cast<uint16_t>((slot - entry.sp) / 8);
    previous = slot;
    if (k == count - 1) return true;
  }
  return false;
}

// The links of a stack whose checked words are image[0..words), ascending: the frame-pointer
// register at the call, and each word pointer_at[p] (of `pointers`, which point to pointer_to[p])
// that points just below a checked word, where a frame pointer points: the caller's saved one,
// right below the return address. Written to `links`; returns how many.
uint32_t find_links(const uint16_t* image, uint32_t words, const uint16_t* pointer_at, const uint16_t* pointer_to,
                    uint32_t pointers, const StackProbe& entry, uint16_t* links) {
  const auto checked = [&](uint32_t offset) { return std::binary_search(image, image + words, offset); };
  uint32_t count = 0;
  const uintptr_t rbp_offset = entry.rbp - entry.sp;  // wraps when below: never checked then
  if ((rbp_offset & 7) == 0 && rbp_offset < 8 * uintptr_t{CachedStack::kEntryLink - 1} &&
      checked(static_cast<uint32_t>(rbp_offset / 8 + 1)))
    links[count++] = CachedStack::kEntryLink;
  for (uint32_t p = 0; p < pointers; ++p) {
    if (checked(pointer_to[p])) links[count++] = pointer_at[p];
  }
  return count;
}

// Sums a cached stack's checked words and links as a hit sums them (the words are what they were
// when found: this thread is here), and records how many of each there are.
void seal_cached_stack(CachedStack* cached, uint64_t tag, uint32_t words, uint32_t links, const StackProbe& entry) {
  const uint16_t* slot = StackCache::slot_words(cached);
  const uint32_t head = words < StackCache::kHeadSlots ? words : StackCache::kHeadSlots;
  const uint64_t head_hash = tag + words_sum(slot, 0, head, entry.sp);
  cached->head_check = head_bits(head_hash);
  cached->check = head_hash + words_sum(slot, head, words, entry.sp) + links_sum(slot, words, links, entry);
  cached->words = static_cast<uint8_t>(words);
  cached->links = static_cast<uint8_t>(links);
}

// What a stack is checked by once its real slots are known (`real`, of frames 1 to count - 1):
// those slots, and every word below the last that a frame pointer points just below (the
// register at the call, or one of the `pointers` words, pointing to pointer_to[]) and that holds
// one of the stack's return addresses. A frame that realigns its stack through a DRAP register
// (gcc, for an over-aligned local beside a variable-length array) copies its return address below
// the alignment gap and keeps its frame pointer there: that copy, not the slot, moves with its
// caller's frame, and the slot may sit in padding that still holds the previous caller's return
// address (checked by the slots alone, a second caller's stack passed for the first's). Written
// to `out` (room for kMaxWords), ascending; returns how many, or kTooMany.
constexpr uint32_t kMaxWords = sizeof(StackCache::Scratch::image) / sizeof(uint16_t);
constexpr uint32_t kTooMany = UINT32_MAX;
uint32_t real_and_linked_words(const uint16_t* real, int count, const uintptr_t* ips, const uint16_t* pointer_to,
                               uint32_t pointers, const StackProbe& entry, uint16_t* out) {
  if (static_cast<uint32_t>(count) - 1 + 1 + pointers > kMaxWords) return kTooMany;
  uint32_t n = 0;
  for (int k = 0; k + 1 < count; ++k) out[n++] = real[k];
  const uint16_t last = real[count - 2];
  const auto holds_return_address = [&](uint32_t offset) {
    if (offset >= last) return false;
    const uintptr_t word = load(entry.sp + 8 * uintptr_t{offset});
    for (int k = 1; k < count; ++k)
      if (ips[k] == word) return true;
    return false;
  };
  const uintptr_t rbp_offset = entry.rbp - entry.sp;  // wraps when below: never taken then
  if ((rbp_offset & 7) == 0 && rbp_offset / 8 + 1 < last &&
      holds_return_address(static_cast<uint32_t>(rbp_offset / 8 + 1)))
    out[n++] = static_cast<uint16_t>(rbp_offset / 8 + 1);
  for (uint32_t p = 0; p < pointers; ++p)
    if (holds_return_address(pointer_to[p])) out[n++] = pointer_to[p];
  std::sort(out, out + n);
  return static_cast<uint32_t>(std::unique(out, out + n) - out);
}

// A cached stack with stale copies among its words, hit for the kRefineAfterHits-th time: from now
// on it checks the real slots alone (find_real_slots) and the links to them. The thread is at this
// stack now (the hit validated it), so a stepped unwind from here finds its frames; the entry
// stays as it was when the unwind does not agree. Paid once per such stack, at a few microseconds,
// and only by stacks hit often: python3's imports cache thousands of stacks with stale copies
// that they rarely see again, and paying for each at its caching cost the churn 6%.
__attribute__((noinline)) void refine_cached_stack(StackCache* cache, CachedStack* cached, const StackProbe& entry) {
  const StackView view = stack_table().frames(cached->stack_id);
  const auto count = static_cast<int>(view.depth);
  uint16_t real[Config::kMaxStackDepth];
  if (count < 2 || !find_real_slots(entry, view.frames, count, cache->stack_high, real)) return;
  // The words pointing higher up this stack below the last real slot, as the fill found them.
  const uintptr_t top = highest_checkable(entry.sp, cache->stack_high);
  StackCache::Scratch& scratch = cache->scratch;
  uint32_t pointers = 0;
  for (uintptr_t a = entry.sp; a < entry.sp + 8 * uintptr_t{real[count - 2]}; a += 8) {
    const uintptr_t word = load(a);
    if (word <= a || word > top || ((word - entry.sp) & 7) != 0) continue;
    if (pointers == StackCache::Scratch::kMaxPointers) return;  // too many to tell: left as it was
    scratch.pointer_at[pointers] = static_cast<uint16_t>((a - entry.sp) / 8);
    scratch.pointer_to[pointers++] = static_cast<uint16_t>((word + 8 - entry.sp) / 8);
  }
  uint16_t* const words = scratch.image;
  const uint32_t word_count =
      real_and_linked_words(real, count, view.frames, scratch.pointer_to, pointers, entry, words);
  if (word_count == kTooMany) return;
  const uint32_t links =
      find_links(words, word_count, scratch.pointer_at, scratch.pointer_to, pointers, entry, scratch.links);
  if (word_count + links >= static_cast<uint32_t>(cached->words) + cached->links) return;  // nothing gained
  uint16_t* slot = StackCache::slot_words(cached);
  std::memcpy(slot, words, word_count * sizeof(uint16_t));
  std::memcpy(slot + word_count, scratch.links, links * sizeof(uint16_t));
  seal_cached_stack(cached, entry.tag, word_count, links, entry);
}

// A miss: unwinds, interns, and caches the stack when it can be validated later.
__attribute__((noinline)) uint32_t capture_uncached(StackCache* cache, int depth, const StackProbe& entry,
                                                    uint32_t generation) {
  uintptr_t ips[Config::kMaxStackDepth + kAnchorFrames];
  const uint64_t tag = entry.tag;
  ++cache->misses;
  ++cache->window_misses;
  const bool cacheable = entry.sp != 0;
  const int unwound = unwind_program_frames(ips, cacheable ? depth + kAnchorFrames : depth);
  const int count = unwound < depth ? unwound : depth;
  if (count == 0) return StackTable::kNoStack;
  bool made = false;
  const uint32_t id = stack_table().intern(ips, static_cast<uint32_t>(count), generation, &made);
  if (++cache->window_captures == StackCache::kWindow) {
    maybe_grow(cache);
    return id;  // the table may be new: this set's pointers are stale
  }

  // Remember where each return address sits, so the next capture from here can be validated. Not
  // for a stack seen for the first time: scanning its image costs several unwinds (python3's
  // start-up, deep in eval frames while it imports, makes 15,000 stacks it mostly never sees
  // again, at 19,000 instructions a scan), and a stack that comes back is cached then.
  if (!cacheable || made || ips[0] != entry.ip) return id;
  // A handler's stack through its signal frame on the same stack: the kernel aligns that frame
  // (64 bytes), so one entry frame sits above interrupted frames of other sizes, whose slots then
  // lie elsewhere while the old ones may still hold the old return addresses (a handler
  // allocating while the program ran in either of two callers had every block under the first).
  // Not cached: each such capture unwinds.
  for (int k = 1; k < unwound; ++k)
    if (is_signal_return(ips[k])) return id;
  // The image, in one pass up the stack: every word holding one of the recorded frames' return
  // addresses (found through a small open-addressing set of them, at most half full), up to the
  // slot of a few frames past the recorded ones. Those slots are located as the first copy of
  // each return address above the previous one; the real slot of the last recorded frame lies
  // below the end unless every one of those copies is stale and below it.
  StackCache::Scratch& scratch = cache->scratch;
  uintptr_t* const return_addresses = scratch.return_addresses;
  for (uint32_t i = 0; i < scratch.used_slots; ++i) return_addresses[scratch.used_slot[i]] = 0;
  scratch.used_slots = 0;
  const auto set_index = [](uintptr_t value) {
    return static_cast<unsigned>((value * 0x9e3779b97f4a7c15ull) >> (64 - StackCache::Scratch::kSetBits));
  };
  constexpr unsigned kSetMask = StackCache::Scratch::kSetSlots - 1;
  for (int k = 1; k < count; ++k) {
    unsigned at = set_index(ips[k]);
    while (return_addresses[at] != 0 && return_addresses[at] != ips[k]) at = (at + 1) & kSetMask;
    if (return_addresses[at] == 0) scratch.used_slot[scratch.used_slots++] = static_cast<uint16_t>(at);
    return_addresses[at] = ips[k];
  }
  constexpr uintptr_t kLargestFrame = uintptr_t{256} * 1024;
  const uintptr_t top = highest_checkable(entry.sp, cache->stack_high);
  int anchor = count - 1 + kAnchorFrames < unwound ? count - 1 + kAnchorFrames : unwound - 1;
  if (count == 1) anchor = 0;  // only the entry frame, which the tag covers
  uint16_t* const image = scratch.image;
  uint32_t words = 0, words_to_last_slot = 0;
  // Words pointing higher up this stack, 8-aligned with its entry: saved frame pointers among them.
  uint16_t* const pointer_at = scratch.pointer_at;
  uint16_t* const pointer_to = scratch.pointer_to;
  uint32_t pointers = 0, pointers_to_last_slot = 0;
  uintptr_t last_slot = entry.sp - 8;
  int next = 1;                               // the frame whose slot is looked for
  uint16_t key_slots[StackCache::kKeySlots];  // the slots of frames 1, 2, ... as found
  bool overflowed = false;                    // more copies than an entry can check
  for (uintptr_t a = entry.sp; next <= anchor; a += 8) {
    if (a > top || a > last_slot + kLargestFrame) {
      // A recorded frame outside this stack (signal frame, other stack), or too far up: not
      // cacheable. Past the recorded frames: the image ends at the last slot found.
      if (next < count) return id;
      break;
    }
    const uintptr_t word = load(a);
    unsigned at = set_index(word);
    while (return_addresses[at] != 0 && return_addresses[at] != word) at = (at + 1) & kSetMask;
    if (return_addresses[at] != 0) {
      if (words == cache->capacity) {
        overflowed = true;  // too many stale copies to check: cached only with the real slots
      } else {
        image[words++] = static_cast<uint16_t>((a - entry.sp) / 8);
      }
    } else if (word > a && word <= top && ((word - entry.sp) & 7) == 0) {
      if (pointers == StackCache::Scratch::kMaxPointers) return id;  // too many to tell: not cached
      pointer_at[pointers] = static_cast<uint16_t>((a - entry.sp) / 8);
      pointer_to[pointers++] = static_cast<uint16_t>((word + 8 - entry.sp) / 8);
    }
    // Slots are at least 16 bytes apart (a frame that calls keeps the stack 16-byte aligned): a
    // copy of the return addresses in an array (a backtrace() buffer) is not a chain of slots.
    if (word == ips[next] && a >= last_slot + 16) {
      if (next <= static_cast<int>(StackCache::kKeySlots))
        key_slots[next - 1] = static_cast<uint16_t>((a - entry.sp) / 8);
      last_slot = a;
      words_to_last_slot = words;
      pointers_to_last_slot = pointers;
      ++next;
    }
  }
  words = words_to_last_slot;
  pointers = pointers_to_last_slot;
  // Stale copies among the words: more of them than slots in the chain. Each costs every hit a
  // load and half a multiply (the sqlite3 shell's cached stacks checked 43 words, of which 18 were
  // real slots), so a stack hit often has them dropped (refine_cached_stack); one with more than
  // an entry can check is cached with its real slots alone, or not at all.
  const bool stale = overflowed || words > static_cast<uint32_t>(next - 1);
  if (overflowed) {
    uint16_t real[Config::kMaxStackDepth];
    if (count < 2 || !find_real_slots(entry, ips, count, cache->stack_high, real)) return id;
    uint32_t below = 0;  // links only below the last real slot: saved where its callees ran
    while (below < pointers && pointer_at[below] < real[count - 2]) ++below;
    pointers = below;
    words = real_and_linked_words(real, count, ips, pointer_to, pointers, entry, image);
    if (words == kTooMany) return id;
    for (unsigned i = 0; i < StackCache::kKeySlots && i + 1 < static_cast<unsigned>(count); ++i) key_slots[i] = real[i];
    next = count;
  }
  uint16_t* const links = scratch.links;
  const uint32_t link_count = find_links(image, words, pointer_at, pointer_to, pointers, entry, links);
  if (words + link_count > cache->capacity) return id;  // too many to check: not cached

  // The first stack cached under an entry tag decides where its siblings' sets are chosen by; the
  // stack goes to the set of the key that lookups of it now make (another set than probed when
  // this claimed the tag's slots).
  StackCache::EntrySlots& known = entry_slots(cache, tag);
  if (known.tag != tag && known.uses != 0) {
    --known.uses;
  } else if (known.tag != tag) {
    const int found = next - 1 < count - 1 ? next - 1 : count - 1;  // slots of recorded frames found
    known.count =
        static_cast<uint16_t>(found < static_cast<int>(StackCache::kKeySlots) ? found : StackCache::kKeySlots);
    for (unsigned i = 0; i < known.count; ++i) known.slot[i] = key_slots[i];
    known.tag = tag;
  }
  const uint64_t fill_key = set_key(cache, tag, entry.sp);
  const unsigned fill_set = static_cast<unsigned>(fill_key >> cache->set_shift);
  uint64_t* const tags = cache->tags + size_t{fill_set} * StackCache::kWays;
  const unsigned way = cache->next_way[fill_set]++ % StackCache::kWays;
  CachedStack* cached = cache->entry(fill_set * StackCache::kWays + way);
  tags[way] = 0;  // empty until complete
  uint16_t* slot = StackCache::slot_words(cached);
  std::memcpy(slot, image, words * sizeof(uint16_t));
  std::memcpy(slot + words, links, link_count * sizeof(uint16_t));
  cached->stack_id = id;
  seal_cached_stack(cached, tag, words, link_count, entry);
  cached->refine_in = stale && !overflowed ? CachedStack::kRefineAfterHits : 0;
  tags[way] = fill_key;
  cache->last_hit[fill_set] = static_cast<uint8_t>(way);
  return id;
}

}  // namespace

uint32_t capture_stack(StackCache* cache, int depth, const StackProbe* given) {
  const uint32_t native = capture_native_stack(cache, depth, given);
  if (__builtin_expect(!python_frames_enabled(), 1)) return native;
  // Short of stack (a handler on an 8 KiB alternate signal stack, as crash handlers have): the
  // native stack alone (there, its caller alone: unwind_program_frames). The Python frames' walk,
  // merge and interning take some 6.4 KiB more below the allocation (12 KiB in all where the
  // native capture takes 5.7), which overran such a stack: SIGSEGV, or a neighbour's memory
  // overwritten.
  const ThreadState* state = tls_thread.state;
  uintptr_t low = state != nullptr ? state->stack_low : 0, high = state != nullptr ? state->stack_high : 0;
  if (__builtin_expect(short_of_stack(low, high, kPythonFramesRoom), 0)) return native;
  return add_python_frames(cache != nullptr ? &cache->python : nullptr, native, depth);
}

uint32_t intern_caller_without_caches(uintptr_t frame) {
  const EntryFrame entry = find_entry_frame(frame, frame + uintptr_t{64} * 1024);
  if (entry.sp == 0) return 0;
  return stack_table().intern(&entry.ip, 1, module_generation());
}

uint32_t capture_caller(StackCache* cache) {
  if (cache == nullptr || cache->stack_high == 0) return capture_stack(cache, 1);
  const EntryFrame entry = find_entry_frame(cache->stack_low, cache->stack_high);
  if (entry.sp == 0) return capture_stack(cache, 1);
  const uint32_t generation = module_generation();
  if (__builtin_expect(cache->generation != generation, 0)) forget_cached_stacks(cache, generation);
  // Two ways a set, the one found last first: direct-mapped, two of a program's few hot free
  // callers sharing an entry evicted each other on every free (python3's churn: 2.8% of frees
  // missed and interned their caller again).
  const unsigned set = static_cast<unsigned>((entry.ip * 0x9e3779b97f4a7c15ull) >> 57) * 2;
  if (cache->caller_ip[set] == entry.ip) return cache->caller_id[set];
  if (cache->caller_ip[set + 1] == entry.ip) {
    const uint32_t id = cache->caller_id[set + 1];
    cache->caller_ip[set + 1] = cache->caller_ip[set];
    cache->caller_id[set + 1] = cache->caller_id[set];
    cache->caller_ip[set] = entry.ip;
    cache->caller_id[set] = id;
    return id;
  }
  const uint32_t id = stack_table().intern(&entry.ip, 1, generation);
  cache->caller_ip[set + 1] = cache->caller_ip[set];
  cache->caller_id[set + 1] = cache->caller_id[set];
  cache->caller_ip[set] = entry.ip;
  cache->caller_id[set] = id;
  return id;
}

}  // namespace heapkeeper::alloc
