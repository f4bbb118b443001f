// What the preload tests (api_semantics_test, threads_test) know about the allocator under them.
//
// Those binaries never link heapkeeper: they run once on glibc's malloc, the oracle, and once with
// libheapkeeper.so preloaded, and make the same assertions both times. heapkeeper is detected the
// way any program would, through dlsym(RTLD_DEFAULT, "heapkeeper_..."); when it is there, the
// helpers below additionally check that each block the program got is tracked, and with what
// size. In the glibc run they succeed without checking anything more.
#pragma once

#include <dlfcn.h>
#include <malloc.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "heapkeeper/heapkeeper.h"

namespace heapkeeper_test {

// The public header names its structs after the functions that fill them (a C idiom), so C++ must
// spell them with `struct`.
using BlockInfo = struct heapkeeper_block_info;
using HeapStats = struct heapkeeper_heap_stats;

struct Heapkeeper {
  int (*block_info)(const void*, BlockInfo*) = nullptr;
  int (*stack_frames)(uint32_t, uintptr_t*, int) = nullptr;
  void (*heap_stats)(HeapStats*) = nullptr;
  bool present() const { return block_info != nullptr && stack_frames != nullptr && heap_stats != nullptr; }
};

inline const Heapkeeper& heapkeeper() {
  static const Heapkeeper found = [] {
    Heapkeeper h;
    h.block_info = reinterpret_cast<decltype(h.block_info)>(dlsym(RTLD_DEFAULT, "heapkeeper_block_info"));
    h.stack_frames = reinterpret_cast<decltype(h.stack_frames)>(dlsym(RTLD_DEFAULT, "heapkeeper_stack_frames"));
    h.heap_stats = reinterpret_cast<decltype(h.heap_stats)>(dlsym(RTLD_DEFAULT, "heapkeeper_heap_stats"));
    return h;
  }();
  return found;
}

// Whether the test was started with libheapkeeper.so in LD_PRELOAD: the tests check that the
// library really is loaded then (a wrong path would otherwise turn the run into a second glibc run).
inline bool heapkeeper_expected() {
  const char* preload = std::getenv("LD_PRELOAD");
  return preload != nullptr && std::strstr(preload, "libheapkeeper") != nullptr;
}

inline HeapStats heap_stats() {
  HeapStats stats{};
  if (heapkeeper().present()) heapkeeper().heap_stats(&stats);
  return stats;
}

// Keeps the optimiser from folding a value into a constant (and from warning about sizes it can
// prove absurd: those are exactly what the tests pass on purpose).
template <typename T>
inline T opaque(T value) {
  asm volatile("" : "+r"(value));
  return value;
}

// Makes `p` and everything reachable from it observable, so that allocations, the stores into them
// and their frees are not optimised away.
inline void escape(const void* p) { asm volatile("" : : "g"(p) : "memory"); }

// With heapkeeper loaded: `p` is the start of a live tracked block whose recorded size is
// `requested` (at least `requested` if `exact` is false), whose usable size agrees with
// malloc_usable_size, that has an allocation stack, and whose interior bytes all lead back to it.
inline testing::AssertionResult IsTrackedBlock(const void* p, size_t requested, bool exact = true) {
  const Heapkeeper& hk = heapkeeper();
  if (!hk.present()) return testing::AssertionSuccess();
  if (p == nullptr) return testing::AssertionFailure() << "null pointer";
  BlockInfo info{};
  if (hk.block_info(p, &info) != 1) return testing::AssertionFailure() << p << " is not a live tracked block";
  if (info.start != p) return testing::AssertionFailure() << p << " resolves to a block starting at " << info.start;
  // Once malloc_usable_size was asked (here, or earlier), the block owns its usable size.
  if (exact ? info.requested_size != requested && info.requested_size != info.usable_size
            : info.requested_size < requested) {
    return testing::AssertionFailure() << p << ": recorded size " << info.requested_size << ", requested " << requested;
  }
  const size_t usable = malloc_usable_size(const_cast<void*>(p));
  if (info.usable_size != usable || usable < info.requested_size) {
    return testing::AssertionFailure() << p << ": usable size " << info.usable_size << ", malloc_usable_size " << usable
                                       << ", recorded size " << info.requested_size;
  }
  if (hk.block_info(p, &info) != 1 || info.requested_size != usable) {
    return testing::AssertionFailure() << p << ": after malloc_usable_size the recorded size is " << info.requested_size
                                       << ", not the usable " << usable;
  }
  if (info.stack_id == 0) return testing::AssertionFailure() << p << " has no allocation stack";
  uintptr_t frames[HEAPKEEPER_MAX_STACK_DEPTH];
  const int depth = hk.stack_frames(info.stack_id, frames, HEAPKEEPER_MAX_STACK_DEPTH);
  if (depth < 1) return testing::AssertionFailure() << p << ": stack " << info.stack_id << " has no frames";
  const size_t size = info.requested_size;
  const size_t interior[] = {1, size / 2, size - 1};
  for (size_t offset : interior) {
    if (offset == 0 || offset >= size) continue;
    BlockInfo inner{};
    const auto* address = static_cast<const char*>(p) + offset;
    if (hk.block_info(address, &inner) != 1 || inner.start != p) {
      return testing::AssertionFailure() << "interior pointer " << p << "+" << offset << " does not resolve to " << p;
    }
  }
  BlockInfo past{};
  const auto* one_past = static_cast<const char*>(p) + (size == 0 ? 1 : size);
  if (hk.block_info(one_past, &past) == 1 && past.start == p) {
    return testing::AssertionFailure() << "the byte after " << p << "'s " << size << " bytes resolves to it";
  }
  return testing::AssertionSuccess();
}

// With heapkeeper loaded: `p` lies inside a live tracked block (new[] of a type with a destructor,
// and map nodes, hand out pointers into a block rather than its start).
inline testing::AssertionResult IsInsideTrackedBlock(const void* p, size_t length) {
  const Heapkeeper& hk = heapkeeper();
  if (!hk.present()) return testing::AssertionSuccess();
  BlockInfo info{};
  if (hk.block_info(p, &info) != 1) return testing::AssertionFailure() << p << " is inside no tracked block";
  const auto start = reinterpret_cast<uintptr_t>(info.start);
  const auto address = reinterpret_cast<uintptr_t>(p);
  if (address < start || address + length > start + info.requested_size) {
    return testing::AssertionFailure() << "[" << p << ", +" << length << ") is not inside the block at " << info.start
                                       << " of " << info.requested_size << " bytes";
  }
  return IsTrackedBlock(info.start, info.requested_size);
}

// With heapkeeper loaded: the block that started at `p` is no longer live. Call it right after the
// free, before anything else can allocate the same memory.
inline testing::AssertionResult IsReleased(const void* p) {
  const Heapkeeper& hk = heapkeeper();
  if (!hk.present()) return testing::AssertionSuccess();
  BlockInfo info{};
  if (hk.block_info(p, &info) == 1 && info.start == p) {
    return testing::AssertionFailure() << p << " is still a live block after it was freed";
  }
  return testing::AssertionSuccess();
}

}  // namespace heapkeeper_test
