// libunwind's critical sections inside heapkeeper's own unwinds (see unwinder_masks.h).
#include "allocator/unwinder_masks.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <link.h>
#include <sched.h>

#include <atomic>
#include <cstddef>
#include <cstring>

#include "allocator/monotonic_clock.h"
#include "allocator/stack_capture.h"
#include "allocator/thread_registry.h"

namespace heapkeeper::alloc {
namespace {

CodeRange g_unwinder;

// SIGKILL and SIGSTOP alone in the first word (the kernel never reports them blocked), and a tag
// in the second, which sigemptyset and sigaddset leave 0 and sigfillset makes all ones: no set a
// program builds or the kernel writes.
constexpr uint64_t kMarkerWord = (uint64_t{1} << (SIGKILL - 1)) | (uint64_t{1} << (SIGSTOP - 1));
constexpr uint64_t kMarkerTag = 0x6865617070726f66ull;
static_assert(sizeof(sigset_t) >= 2 * sizeof(uint64_t));

// The second word is read only when the first matches: a program's call may pass a mask object
// of the kernel's 8 bytes.
bool is_marker(const sigset_t* set) {
  uint64_t word;
  std::memcpy(&word, set, sizeof word);
  if (word != kMarkerWord) return false;
  std::memcpy(&word, reinterpret_cast<const char*>(set) + sizeof word, sizeof word);
  return word == kMarkerTag;
}

void write_marker(sigset_t* set) {
  const uint64_t words[2] = {kMarkerWord, kMarkerTag};
  std::memset(set, 0, sizeof *set);
  std::memcpy(set, words, sizeof words);
}

bool in_unwinder(uintptr_t address) { return address >= g_unwinder.low && address < g_unwinder.high; }

// Whether another loaded object than heapkeeper's needs libunwind.so (a profiler that unwinds
// in its SIGPROF handler): then libunwind's blocks stay system calls. Looked at again whenever the
// loader's count of loaded objects moved (dlpi_adds), at each outermost section.
std::atomic<bool> g_unwinder_shared{false};
std::atomic<unsigned long long> g_adds_seen{0};

int read_adds(dl_phdr_info* info, size_t size, void* data) {
  if (size < offsetof(dl_phdr_info, dlpi_adds) + sizeof info->dlpi_adds) return 1;
  *static_cast<unsigned long long*>(data) = info->dlpi_adds;
  return 1;  // the first object is enough
}

bool names_unwinder(const char* soname) { return std::strncmp(soname, "libunwind", 9) == 0; }

// heapkeeper and libunwind themselves are told by their code: an object whose executable segment
// holds heapkeeper's or libunwind's.
int find_unwinder_user(dl_phdr_info* info, size_t, void* data) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
    const uintptr_t start = info->dlpi_addr + ph.p_vaddr;
    if (in_unwinder(start) || is_heapkeeper_code(start)) return 0;
  }
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

// Whether libunwind's sections may run without blocking signals: no one else unwinds with it.
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

// The thread preparing a fork (ThreadLocal::forking) never waits: a signal handler of its own that
// allocates meanwhile would wait for its own fork. Its section, if one is held at the fork, is held
// by the same thread in the child, which ends it there.
void enter_section() {
  if (tls_depth++ != 0) return;
  for (;;) {
    while (g_fork_pending.load(std::memory_order_seq_cst) && !tls_thread.forking) sched_yield();
    g_threads_inside.fetch_add(1, std::memory_order_seq_cst);
    if (!g_fork_pending.load(std::memory_order_seq_cst) || tls_thread.forking) return;
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
  unwinder_unshared();  // the objects loaded with the program; dlopen's are seen at sections
}

std::optional<bool> is_unwinder_code(uintptr_t address) {
  if (g_unwinder.high == 0) return std::nullopt;
  return in_unwinder(address);
}

bool unwinder_used_by_others() { return g_unwinder_shared.load(std::memory_order_relaxed); }

bool elide_unwinder_mask_call(const sigset_t* set, sigset_t* old, uintptr_t caller) {
  const bool marked = set != nullptr && is_marker(set);
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
  const bool outermost = tls_depth == 0;
  enter_section();
  if (g_unwinder_shared.load(std::memory_order_relaxed) || (outermost && !unwinder_unshared())) return false;
  write_marker(old);
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

LoaderLockSection::LoaderLockSection() noexcept { enter_section(); }
LoaderLockSection::~LoaderLockSection() { leave_section(); }

void end_fork_for_unwinder_in_child() {
  g_threads_inside.store(tls_depth != 0 ? 1 : 0, std::memory_order_relaxed);
  g_fork_pending.store(false, std::memory_order_relaxed);
}

}  // namespace heapkeeper::alloc
