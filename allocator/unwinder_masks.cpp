// libunwind's critical sections inside heapkeeper's own unwinds (see unwinder_masks.h).
#include "allocator/unwinder_masks.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <link.h>
#include <sched.h>

#include <dlfcn.h>

#include <atomic>
#include <cstddef>
#include <cstring>

#include "allocator/monotonic_clock.h"
#include "allocator/stack_capture.h"

namespace heapkeeper::alloc {
namespace {

CodeRange g_unwinder;
uintptr_t g_iterate_phdr = 0;  // dl_iterate_phdr as the global scope resolves it (libunwind's too)

// SIGKILL and SIGSTOP: the kernel never reports them blocked, so no mask a program saved holds
// them both and nothing else.
constexpr uint64_t kMarkerWord = (uint64_t{1} << (SIGKILL - 1)) | (uint64_t{1} << (SIGSTOP - 1));

inline uint64_t first_word(const sigset_t* set) {
  uint64_t word;
  std::memcpy(&word, set, sizeof word);
  return word;
}

template <typename T>
T read_code(uintptr_t address) {
  T value;
  std::memcpy(&value, reinterpret_cast<const void*>(address), sizeof value);
  return value;
}

bool in_unwinder(uintptr_t address) { return address >= g_unwinder.low && address < g_unwinder.high; }

// The function a call at `call` (an E8 rel32 instruction in libunwind's code) reaches through
// libunwind's PLT: the slot of its `jmp *slot(%rip)` (after an endbr64 and a bnd prefix, where the
// build has them), as it holds it now. 0 when `call` does not decode as such.
uintptr_t plt_call_target(uintptr_t call) {
  const uintptr_t stub = call + 5 + static_cast<uintptr_t>(static_cast<intptr_t>(read_code<int32_t>(call + 1)));
  if (!in_unwinder(stub) || !in_unwinder(stub + 16)) return 0;
  uintptr_t at = stub;
  if (read_code<uint32_t>(at) == 0xfa1e0ff3u) at += 4;  // endbr64
  if (read_code<uint8_t>(at) == 0xf2) at += 1;          // bnd
  if (read_code<uint8_t>(at) != 0xff || read_code<uint8_t>(at + 1) != 0x25) return 0;
  const uintptr_t slot = at + 6 + static_cast<uintptr_t>(static_cast<intptr_t>(read_code<int32_t>(at + 2)));
  return reinterpret_cast<const std::atomic<uintptr_t>*>(slot)->load(std::memory_order_relaxed);
}

// Whether the code after the sigprocmask call returning to `return_address` calls dl_iterate_phdr
// through libunwind's PLT before any other function it reaches through it: a look-up's block
// (dwarf_find_proc_info). A mutex's block calls pthread_mutex_lock first. The bytes are scanned for
// E8 opcodes, each taken only if it decodes as a call into a PLT stub; a false one would have to
// decode as such too. Before libunwind's first look-up has bound its dl_iterate_phdr slot (lazy
// binding) the answer is no: that block is a system call.
bool is_lookup_block(uintptr_t return_address) {
  constexpr uintptr_t kScanBytes = 40;
  if (!in_unwinder(return_address + kScanBytes + 5)) return false;
  for (uintptr_t at = return_address; at < return_address + kScanBytes; ++at) {
    if (read_code<uint8_t>(at) != 0xe8) continue;
    const uintptr_t target = plt_call_target(at);
    if (target != 0) return target == g_iterate_phdr;
  }
  return false;
}

// The call sites found to be look-ups' blocks (libunwind has one, some builds a few), so each is
// decoded once. Other sites are decoded at each call: they make the system call anyway.
constexpr unsigned kLookupSites = 16;
std::atomic<uintptr_t> g_lookup_sites[kLookupSites];

bool lookup_block_at(uintptr_t site) {
  for (const std::atomic<uintptr_t>& known : g_lookup_sites) {
    const uintptr_t value = known.load(std::memory_order_acquire);
    if (value == site) return true;
    if (value == 0) break;
  }
  if (!is_lookup_block(site)) return false;
  for (std::atomic<uintptr_t>& known : g_lookup_sites) {
    uintptr_t expected = 0;
    if (known.compare_exchange_strong(expected, site, std::memory_order_acq_rel) || expected == site) break;
  }
  return true;
}

// Whether another loaded object than heapkeeper's needs libunwind.so (a profiler that unwinds
// in its SIGPROF handler): then its mutexes' blocks stay system calls. Looked at again whenever
// the loader's count of loaded objects moved (dlpi_adds), at the look-ups' blocks: a mutex section
// follows a look-up in the same step.
std::atomic<bool> g_unwinder_shared{false};
std::atomic<unsigned long long> g_adds_seen{0};
uintptr_t g_self_base = 0, g_unwinder_base = 0;

int read_adds(dl_phdr_info* info, size_t size, void* data) {
  if (size < offsetof(dl_phdr_info, dlpi_adds) + sizeof info->dlpi_adds) return 1;
  *static_cast<unsigned long long*>(data) = info->dlpi_adds;
  return 1;  // the first object is enough
}

bool names_unwinder(const char* soname) { return std::strncmp(soname, "libunwind", 9) == 0; }

int find_unwinder_user(dl_phdr_info* info, size_t, void* data) {
  if (info->dlpi_addr == g_self_base || info->dlpi_addr == g_unwinder_base) return 0;
  const ElfW(Dyn)* dynamic = nullptr;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
      dynamic = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
  }
  if (dynamic == nullptr) return 0;
  const char* strings = nullptr;
  for (const ElfW(Dyn)* d = dynamic; d->d_tag != DT_NULL; ++d) {
    if (d->d_tag == DT_STRTAB) strings = reinterpret_cast<const char*>(d->d_un.d_ptr);
  }
  // The loader relocates DT_STRTAB in the objects it loads; the vDSO's is left as an offset.
  if (strings == nullptr || reinterpret_cast<uintptr_t>(strings) < info->dlpi_addr) return 0;
  for (const ElfW(Dyn)* d = dynamic; d->d_tag != DT_NULL; ++d) {
    if (d->d_tag == DT_NEEDED && names_unwinder(strings + d->d_un.d_val)) {
      *static_cast<bool*>(data) = true;
      return 1;
    }
  }
  return 0;
}

// Whether libunwind's mutexes may be taken without blocking signals: no one else unwinds with it.
bool unwinder_unshared() {
  if (g_unwinder_shared.load(std::memory_order_relaxed)) return false;
  unsigned long long adds = 0;
  dl_iterate_phdr(read_adds, &adds);
  if (adds != g_adds_seen.load(std::memory_order_relaxed)) {
    bool shared = false;
    dl_iterate_phdr(find_unwinder_user, &shared);
    if (shared) g_unwinder_shared.store(true, std::memory_order_relaxed);
    g_adds_seen.store(adds, std::memory_order_relaxed);
  }
  return !g_unwinder_shared.load(std::memory_order_relaxed);
}

// Forks: the threads inside a libunwind section in heapkeeper's unwinds, and whether a fork is
// being prepared. A thread counts once however deep its sections nest.
std::atomic<uint32_t> g_threads_inside{0};
std::atomic<bool> g_fork_pending{false};
constinit thread_local uint32_t tls_depth __attribute__((tls_model("initial-exec"))) = 0;

void enter_section() {
  if (tls_depth++ != 0) return;
  for (;;) {
    while (g_fork_pending.load(std::memory_order_seq_cst)) sched_yield();
    g_threads_inside.fetch_add(1, std::memory_order_seq_cst);
    if (!g_fork_pending.load(std::memory_order_seq_cst)) return;
    g_threads_inside.fetch_sub(1, std::memory_order_seq_cst);
  }
}

void leave_section() {
  if (tls_depth == 0) return;  // a restore of a block made before heapkeeper saw it
  if (--tls_depth == 0) g_threads_inside.fetch_sub(1, std::memory_order_seq_cst);
}

}  // namespace

void locate_unwinder() {
  g_unwinder = code_range_of(reinterpret_cast<uintptr_t>(&unw_step));
  g_iterate_phdr = reinterpret_cast<uintptr_t>(&dl_iterate_phdr);
  Dl_info where{};
  if (dladdr(reinterpret_cast<void*>(&unw_step), &where) != 0)
    g_unwinder_base = reinterpret_cast<uintptr_t>(where.dli_fbase);
  if (dladdr(reinterpret_cast<void*>(&locate_unwinder), &where) != 0)
    g_self_base = reinterpret_cast<uintptr_t>(where.dli_fbase);
  unwinder_unshared();  // the objects loaded with the program; dlopen's are seen at look-ups
}

bool elide_unwinder_mask_call(const sigset_t* set, sigset_t* old, uintptr_t caller) {
  const bool marked = set != nullptr && first_word(set) == kMarkerWord;
  if (!in_unwinder(caller)) {
    if (!marked) return false;
    leave_section();  // an elided block's restore, made from elsewhere (a tail call)
    return true;
  }
  // libunwind saves the mask when it blocks and passes none when it restores.
  if (old == nullptr) {
    if (set != nullptr) leave_section();
    return marked;
  }
  if (set == nullptr) return false;  // a query
  enter_section();
  // A look-up's block, always; a mutex's only while no one else unwinds with this libunwind (as of
  // the last look-up, which a mutex section follows, or the start).
  if (lookup_block_at(caller)) {
    if (!g_unwinder_shared.load(std::memory_order_relaxed)) unwinder_unshared();
  } else if (g_unwinder_shared.load(std::memory_order_relaxed) || g_adds_seen.load(std::memory_order_relaxed) == 0) {
    return false;
  }
  std::memset(old, 0, sizeof *old);
  std::memcpy(old, &kMarkerWord, sizeof kMarkerWord);
  return true;
}

void begin_fork_for_unwinder() {
  g_fork_pending.store(true, std::memory_order_seq_cst);
  // This thread's own section, if the fork comes from a handler that interrupted one, never ends
  // before the fork. Others last microseconds; one stopped inside must not hang the fork.
  const uint32_t own = tls_depth != 0 ? 1 : 0;
  constexpr uint64_t kPatienceNs = 200ull * 1000 * 1000;
  const uint64_t deadline = monotonic_ns() + kPatienceNs;
  while (g_threads_inside.load(std::memory_order_seq_cst) > own && monotonic_ns() < deadline) sched_yield();
}

void end_fork_for_unwinder_in_parent() { g_fork_pending.store(false, std::memory_order_seq_cst); }

void end_fork_for_unwinder_in_child() {
  g_threads_inside.store(tls_depth != 0 ? 1 : 0, std::memory_order_relaxed);
  g_fork_pending.store(false, std::memory_order_relaxed);
}

}  // namespace heapkeeper::alloc
