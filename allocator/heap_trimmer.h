// Giving memory the program freed back to the system, from a heapkeeper thread, never from the
// program's malloc and free.
//
// jemalloc's own policy, decay, purges from inside malloc and free: each call advances a clock and
// now and then madvises a share of the unused pages away, on the program's thread. Its way off that
// path, background threads, starts with jemalloc in every process, which a build's thousands of
// short processes would pay for. So heapkeeper's arenas never purge on their own (dirty_decay_ms:-1,
// private_heap.cpp) and this trimmer does it instead: a thread started once the program has freed a
// few MiB (a process that never frees has nothing to give back, and never pays for it), which every
// quarter second purges the arenas that hold more than a little unused memory, as glibc trims its
// heap when the free memory at its top passes 128 KiB. Purging is MADV_DONTNEED (muzzy_decay_ms:0):
// MADV_FREE'd pages would still count in the program's RSS until the system runs short.
//
// What is purged is only ever memory jemalloc holds as free (dirty extents): blocks the program has
// not freed, blocks the collector holds in quarantine, and blocks it may still reclaim are all
// allocated as far as jemalloc knows, and stay. A user's MALLOC_CONF that sets dirty_decay_ms or
// muzzy_decay_ms wins: jemalloc then decays as asked and the trimmer is never started.
//
// Nor in collect mode, which keeps jemalloc's own decay (ten seconds) as before: there the stress
// test's collect scenario saw blocks held for one more scan "referenced again" at the next one in 2
// of 6 runs with the trimmer, none in 6 without. The likely cause: purged memory coalesces and is
// handed out again at once as parts of blocks of other sizes, so an address that a stale value still
// holds can land inside a block the collector is holding. The block is kept (never freed wrongly)
// and the warning is a false alarm, but until the collector tells such values apart, collect mode
// does not trade it for memory given back.
//
// HEAPKEEPER_TRIM=off turns both off: freed memory then stays with jemalloc (and in the program's
// RSS, shown as "kept by the allocator" by `heapkeeper stats`) until `heapkeeper trim` asks for it
// (purge_all_arenas) or an allocation finds the reservation exhausted. For a program that frees and
// reallocates in bursts longer than a quarter second, or that wants no madvise calls at all.
#pragma once

#include <cstdint>

namespace heapkeeper::alloc {

// Who gives freed memory back, as the stats segment publishes it (stats::TrimPolicy mirrors it).
enum class FreedMemoryPolicy : uint32_t {
  kTrimmer = 1,       // the trimmer thread, every kTrimIntervalMs (once started)
  kCollectDecay = 2,  // collect mode: jemalloc's decay, 10 s
  kUsersDecay = 3,    // the user's MALLOC_CONF decay
  kOff = 4,           // HEAPKEEPER_TRIM=off: nobody, until asked
};
struct FreedMemoryPolicyInfo {
  FreedMemoryPolicy policy;
  uint64_t interval_ms;           // the trimmer's interval, or the decay time (0 when unknown or off)
  uint64_t kept_per_arena_bytes;  // what the trimmer leaves an arena between looks
};
FreedMemoryPolicyInfo freed_memory_policy() noexcept;

struct PurgeResult {
  uint64_t returned_bytes;  // bytes madvised back to the OS by this purge (from the purge hooks)
  bool ok;
};
// Purges every arena, tracked and internal, whatever the policy: what `heapkeeper trim` asks for.
// Off the hot path (the publisher thread); jemalloc takes each arena's lock in turn.
PurgeResult purge_all_arenas() noexcept;

// From the allocation and free slow path (each time a thread's live bytes moved by the flush step),
// with what the thread has freed so far: starts the trimmer thread once a thread has freed enough.
// One relaxed load when the trimmer runs already.
void note_memory_freed(uint64_t thread_freed_bytes) noexcept;

// Purges every arena's unused pages now, whatever their amount; false if there was nothing to
// purge or purging is the user's (MALLOC_CONF). For an allocation that failed: what the purge
// returns is coalesced and can serve any size, so the allocation is worth retrying.
bool purge_unused_memory() noexcept;

// Whether the user's MALLOC_CONF sets either decay option (then jemalloc's decay is theirs).
bool user_sets_decay() noexcept;

// In a forked child: the parent's trimmer thread does not exist there; the child starts its own
// once it has freed enough.
void heap_trimmer_after_fork() noexcept;

}  // namespace heapkeeper::alloc
