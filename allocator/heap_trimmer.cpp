// Implementation of the heap trimmer (see heap_trimmer.h).
#include "allocator/heap_trimmer.h"

#include <time.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "allocator/config.h"
#include "allocator/engine.h"
#include "allocator/engine_internal.h"
#include "allocator/jemalloc_calls.h"
#include "allocator/private_heap.h"
#include "allocator/thread_credentials.h"

namespace heapkeeper::alloc {

// Whether the user's MALLOC_CONF sets either decay: then jemalloc purges as they asked.
bool user_sets_decay() noexcept {
  const char* conf = std::getenv("MALLOC_CONF");
  return conf != nullptr &&
         (std::strstr(conf, "dirty_decay_ms") != nullptr || std::strstr(conf, "muzzy_decay_ms") != nullptr);
}

namespace {

// How often the trimmer looks, and how much unused memory an arena may keep between looks: what a
// program frees and allocates again within a quarter second is reused without a page fault, and
// what stays unused longer goes back.
constexpr long kTrimIntervalMs = 250;
constexpr uint64_t kKeptUnusedBytes = uint64_t{1} << 20;
// The trimmer starts once a thread has freed this much.
constexpr uint64_t kFreedBeforeStart = uint64_t{4} << 20;

enum TrimmerState : int { kNotStarted = 0, kStarting = 1, kRunning = 2, kUsersPolicy = 3, kTrimmingOff = 4 };
std::atomic<int> g_state{kNotStarted};

bool purge_arena(unsigned arena) {
  char name[48];
  std::snprintf(name, sizeof(name), "arena.%u.purge", arena);
  return je::mallctl(name, nullptr, nullptr, nullptr, 0) == 0;
}

size_t unused_bytes(unsigned arena) {
  char name[64];
  std::snprintf(name, sizeof(name), "stats.arenas.%u.pdirty", arena);
  size_t pages = 0;
  size_t length = sizeof(pages);
  if (je::mallctl(name, &pages, &length, nullptr, 0) != 0) return SIZE_MAX;  // no stats: purge
  return pages * kPageSize;
}

// Purges the tracked arenas holding more than kKeptUnusedBytes of unused pages, and the internal
// arena when it holds any: heapkeeper frees little of its own, mostly tables that grew (a stack
// cache doubling frees the old one) or a scan's work, which nothing is about to reuse. Kept, they
// stood in python3's peak RSS for up to a megabyte (issue #12).
void trim_once() {
  uint64_t epoch = 1;
  size_t length = sizeof(epoch);
  je::mallctl("epoch", &epoch, &length, &epoch, sizeof(epoch));  // refreshes the stats read below
  unsigned arenas = 0;
  length = sizeof(arenas);
  if (je::mallctl("arenas.narenas", &arenas, &length, nullptr, 0) != 0) return;
  for (unsigned arena = 0; arena < arenas; ++arena) {
    const uint64_t kept = arena == private_heap().internal_arena() ? 0 : kKeptUnusedBytes;
    if (unused_bytes(arena) > kept) purge_arena(arena);
  }
}

void trimmer_thread() {
  for (;;) {
    if (!internal_sleep_ms(kTrimIntervalMs)) return;  // to be started again (engine.h)
    trim_once();
  }
}

void start_trimmer() {
  int expected = kNotStarted;
  if (!g_state.compare_exchange_strong(expected, kStarting, std::memory_order_acq_rel)) return;
  if (user_sets_decay() || config().mode == CollectorMode::kCollect) {
    g_state.store(kUsersPolicy, std::memory_order_release);
    return;
  }
  if (config().trim == TrimPolicy::kOff) {
    g_state.store(kTrimmingOff, std::memory_order_release);
    return;
  }
  // On failure (no thread could be made) the state stays kStarting: nothing is retried on every free.
  if (start_internal_thread(trimmer_thread, "heapkeeper-trim")) g_state.store(kRunning, std::memory_order_release);
}

}  // namespace

void note_memory_freed(uint64_t thread_freed_bytes) noexcept {
  if (__builtin_expect(g_state.load(std::memory_order_relaxed) != kNotStarted, 1)) return;
  if (thread_freed_bytes >= kFreedBeforeStart) start_trimmer();
}

bool purge_unused_memory() noexcept {
  if (g_state.load(std::memory_order_acquire) == kUsersPolicy || user_sets_decay() ||
      config().mode == CollectorMode::kCollect)
    return false;
  // Every arena at once, without asking first which hold unused pages: the statistics epoch that
  // asking needs has jemalloc clear and merge every arena's statistics, whose pages a short
  // process touches there for the first time (nine page faults of its exit; an arena with nothing
  // to purge costs a look at its lists). What was purged is what the purge hooks counted (or the
  // trimmer's, purging meanwhile: one more try of a failed allocation).
  return purge_all_arenas().returned_bytes > 0;
}

FreedMemoryPolicyInfo freed_memory_policy() noexcept {
  if (user_sets_decay()) return {FreedMemoryPolicy::kUsersDecay, 0, 0};
  if (config().trim == TrimPolicy::kOff) return {FreedMemoryPolicy::kOff, 0, 0};
  if (config().mode == CollectorMode::kCollect) return {FreedMemoryPolicy::kCollectDecay, 10000, 0};
  return {FreedMemoryPolicy::kTrimmer, kTrimIntervalMs, kKeptUnusedBytes};
}

PurgeResult purge_all_arenas() noexcept {
  const uint64_t before = private_heap().returned_bytes();
  // MALLCTL_ARENAS_ALL: every arena, dirty and muzzy pages alike (forced purge, MADV_DONTNEED).
  const bool ok = je::mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0) == 0;
  return {private_heap().returned_bytes() - before, ok};
}

void heap_trimmer_after_fork() noexcept {
  int state = g_state.load(std::memory_order_relaxed);
  if (state == kRunning || state == kStarting) g_state.store(kNotStarted, std::memory_order_relaxed);
}

}  // namespace heapkeeper::alloc
