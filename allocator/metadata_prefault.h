// Pre-faulting the metadata jemalloc writes as soon as it makes an arena (issue #12, fixed cost).
//
// jemalloc's boot and each arena it makes write their metadata at the start of a fresh 2 MiB base
// block: arena 0 and, once heapkeeper first calls mallctl, its statistics (jemalloc's first block,
// "b0"); a tracked arena's extent sets and bins (the first block of that arena's base). Every one
// of those pages is a page fault, and on the paravirtualized machines the benchmarks run on a fault
// costs 8-9 us where madvise(MADV_POPULATE_WRITE) makes the same page present for about 3.6 us
// (64 fresh pages written one by one: 557 us; populated in one call, then written: 233 us; means
// of 200 rounds, 2026-12-04, the 2-vCPU AMD EPYC guest of README's tables). A traced /bin/true took
// 74 such faults; pre-faulting them took 0.35 ms off its 2.8 ms over a plain run. So heapkeeper
// announces a block it knows jemalloc is about to fill, and the mapping hook (jemalloc's own mmap
// for b0, the extent hook for a tracked arena's base) asks the kernel for its first pages in one
// call. A tracked arena made after start-up is made at a thread's first allocation: the call is
// made there too, once per arena, in place of some twenty faults.
//
// How much: what jemalloc 5.3.0 (Debian 12) has written there when a traced /bin/true exits, read
// from /proc/PID/pagemap: b0's first 59 pages (53 written), a tracked base's first 23 (21). A
// jemalloc that writes less costs those few pages of RSS; one that writes more faults on the rest,
// as before. Kernels before 5.14 refuse the advice and fault as before.
#pragma once

#include <cstddef>

namespace heapkeeper::alloc {

enum class MetadataBlock {
  kBoot,          // jemalloc's first base block: arena 0 and the mallctl statistics
  kTrackedArena,  // the first base block of a tracked arena being made
};

// Until the next metadata block of at least 2 MiB this thread maps (or the scope ends), that block's
// first pages are made present at once, when `allowed`. Scoped around the jemalloc call that makes
// the block.
class PrefaultNextMetadataBlock {
 public:
  PrefaultNextMetadataBlock(MetadataBlock block, bool allowed) noexcept;
  ~PrefaultNextMetadataBlock();
  PrefaultNextMetadataBlock(const PrefaultNextMetadataBlock&) = delete;
  PrefaultNextMetadataBlock& operator=(const PrefaultNextMetadataBlock&) = delete;
};

// Called by the mapping hooks with a block just mapped for jemalloc, `kind` being what that hook
// maps (jemalloc's own mmap: kBoot; the tracked reservation's extent hook: kTrackedArena): pre-faults
// the block's first pages if this thread announced a block of that kind (and forgets it).
void prefault_if_announced(MetadataBlock kind, void* block, size_t length) noexcept;

}  // namespace heapkeeper::alloc
