// Marker: conservative marking of the tracked heap from a set of root ranges, reference counting,
// and the classification of what stays unmarked.
//
// Every aligned word of a root range, and of each reachable block's bytes, that points anywhere
// into a live block (interior pointers included, through the block map's O(1) lookup), or one
// past its end (a pointer C allows a program to keep, and some keep alone), marks that block and
// adds one to its inbound count — its "reference count", as Python's objects have one.
// Blocks left unmarked are unreachable: leaks. Among them, a block no other leaked block points to
// is a *direct* leak, one reached from a direct leak is *indirect* (LeakSanitizer's terms), and one
// reached from no direct leak — a member of a cycle of leaked blocks that nothing else points to,
// or what only such a cycle reaches — is a *cycle* leak (report/leak_kind.h).
//
// All state lives in buffers mapped when the marker starts — never in the heap — because marking
// runs while the world is stopped and the stopped threads may hold the allocator's locks.
#pragma once

#include <cstddef>
#include <cstdint>

#include "collector/os_primitives.h"
#include "report/leak_kind.h"

namespace heapkeeper::alloc {
struct BlockHeader;
}

namespace heapkeeper::collect {

class ReferenceGraph;

struct LeakedBlock {
  uintptr_t region;   // start of the jemalloc region (header included)
  uint64_t size;      // requested bytes
  uint32_t stack_id;  // allocation stack
  uint32_t sequence;  // allocation sequence (low bits), to tell a reused address from the same block
  uint32_t references_from_leaks;
  report::LeakKind kind;
};

// Reference counts after marking: how many inbound references reachable blocks have.
struct ReferenceSummary {
  static constexpr int kBuckets = 6;  // 1, 2, 3-4, 5-8, 9-16, 17 and more
  uint64_t histogram[kBuckets] = {};
  static constexpr int kTop = 5;
  struct Top {
    uintptr_t region;
    uint32_t references;
    uint32_t stack_id;  // read from the block's header while the world is stopped
    uint64_t size;
  } most_referenced[kTop] = {};
};

struct MarkFigures {
  uint64_t live_blocks = 0;
  uint64_t reachable_blocks = 0;
  uint64_t root_bytes = 0;  // bytes of roots scanned
  uint64_t heap_bytes = 0;  // bytes of reachable blocks scanned
  uint64_t leaked_blocks = 0, leaked_bytes = 0;
  uint64_t direct_blocks = 0, indirect_blocks = 0, cycle_blocks = 0;
};

class Marker {
 public:
  Marker() = default;
  ~Marker();
  Marker(const Marker&) = delete;
  Marker& operator=(const Marker&) = delete;

  // Maps the side buffers for the heap as it is now. Call with the world stopped. With `graph`,
  // every reference found is also recorded there (node = rank + 1), for retainers and retained
  // sizes; a graph that cannot be mapped is dropped and marking goes on without it.
  bool begin(ReferenceGraph* graph = nullptr);
  const ReferenceGraph* graph() const { return graph_; }
  void scan_root_range(uintptr_t start, uintptr_t end);
  // A root whose pages may fault when read in place (a file mapping, truncated under it: SIGBUS):
  // read only through process_vm_readv, a page it cannot read skipped (what it held is gone with
  // it), and nothing read where roots are read in place (a seccomp filter forbids the call).
  // Whether it was read.
  bool scan_fallible_root_range(uintptr_t start, uintptr_t end);
  // The 64-bit immediates of machine code in a root (x86-64's movabs), where they are no multiple
  // of 8 bytes in: a JIT's code names blocks it mallocs there (the JVM's inline caches name their
  // CompiledICHolder only so, and collect mode freed them under it). `fallible` as above.
  void scan_unaligned_root_range(uintptr_t start, uintptr_t end, bool fallible);
  // Ranges of the heap the program made unreadable (sorted, not overlapping), set before
  // propagate(): mprotect(PROT_NONE) on part of a block it owns, a guard page of a coroutine's
  // stack carved from a block. A block's bytes there are read through /proc/thread-self/mem, as
  // a debugger reads them, instead of in place, which faulted and killed the program. The ranges
  // must stay valid until the marker is done with classify_leaks().
  void set_unreadable_heap(const MemoryRange* ranges, size_t count) {
    unreadable_ = ranges;
    unreadable_count_ = count;
  }
  // Whether some unreadable heap bytes could not be read that way (no /proc): the scan's verdicts
  // are then unsafe, and the caller drops them.
  bool unreadable_heap_failed() const { return unreadable_failed_; }
  // Marks everything reachable from the roots scanned so far.
  void propagate();
  // Classifies the unmarked blocks; returns them in address order (valid until destruction).
  const LeakedBlock* classify_leaks(size_t& count);

  // With the world stopped (the most referenced blocks' headers are read), after propagate().
  ReferenceSummary summarise_references() const;
  // Inbound references of the live block starting at `region` (after propagate()).
  uint32_t reference_count(uintptr_t region) const;
  const MarkFigures& figures() const { return figures_; }
  // The live bitmap as the scan began (blocks are ranked by it), from heap_base(), 64 granules of
  // 16 bytes a word; valid until destruction.
  uintptr_t heap_base() const { return base_; }
  const uint64_t* live_snapshot() const { return live_; }
  size_t snapshot_words() const { return words_; }

 private:
  bool is_marked(size_t granule) const { return (marks_[granule >> 6] >> (granule & 63)) & 1; }
  bool was_live(size_t granule) const { return (live_[granule >> 6] >> (granule & 63)) & 1; }
  template <typename Visitor>
  void for_each_snapshot_block(Visitor&& visit) const;
  template <typename Visitor>
  void for_each_unmarked_block(Visitor&& visit) const;  // visit(region, rank)
  void scan_root_copy(uintptr_t start, uintptr_t end);
  void set_mark(size_t granule) { marks_[granule >> 6] |= uint64_t{1} << (granule & 63); }
  size_t rank(size_t granule) const;
  // Words to scan: a root range, or a reachable block's user bytes with its header (the block's
  // graph record) and node.
  struct ScanRange {
    uintptr_t start, end;
    const alloc::BlockHeader* header;  // null for a root range
    uint32_t node;
  };
  // `source_delta`: what to add to a word's address in [start, end) to get where the program has
  // it (roots are scanned from a copy).
  void scan_words(uintptr_t start, uintptr_t end, uintptr_t source_delta = 0);
  // Scans several ranges as one stream of candidate words, so that the cache misses of resolving
  // them overlap across small blocks (scan_words is one root range).
  void scan_ranges(const ScanRange* ranges, unsigned range_count, uintptr_t source_delta);
  // `rank`: the block's rank, kept beside it while a graph is recorded (found when the reference to
  // it was resolved, not looked up again when it is scanned).
  void push(uintptr_t region, size_t rank = 0);
  void scan_block_for_leaks(uintptr_t region, bool count_only);
  // Whether [start, end) meets an unreadable range of the heap (set_unreadable_heap).
  bool meets_unreadable(uintptr_t start, uintptr_t end) const;
  // Calls visit(copy_start, copy_end, delta) for consecutive pieces of [start, end) copied through
  // /proc/thread-self/mem into the copy buffer (delta: what to add to a copy's address to get the
  // block's). A piece that cannot be read is skipped, and voids the scan's verdicts
  // (unreadable_failed_) when `unread_voids`: a heap page can only be unreadable so, while a
  // root's page may be a guard region, which holds nothing. Without the file (no /proc, or a
  // syscall filter) the verdicts are void either way.
  template <typename Visitor>
  void for_each_copied_piece(uintptr_t start, uintptr_t end, bool unread_voids, Visitor&& visit);

  uintptr_t base_ = 0, limit_ = 0;
  // The bits of a tagged word taken for an address (known_tag in marker.cpp): the low 48 when
  // the heap lies below 2^48 (always, short of a hint above it under 5-level paging). Programs keep
  // type tags in the top bits of their pointers (NaN-boxing interpreters, top-byte tags) and strip
  // them before each use: read whole, such a pointer named no block, which was reported leaked
  // and, in collect mode, freed under the program. Ignoring a tag can only add references (a leak
  // missed, never invented).
  uintptr_t address_mask_ = ~uintptr_t{0};
  size_t words_ = 0;
  uint64_t* live_ = nullptr;              // the live bitmap as it was when the scan began
  uint64_t* marks_ = nullptr;             // one bit per granule, like the live bitmap
  unsigned char* copy_buffer_ = nullptr;  // roots are read through process_vm_readv into this
  bool direct_root_reads_ = false;        // process_vm_readv unavailable: read roots in place
  const MemoryRange* unreadable_ = nullptr;
  size_t unreadable_count_ = 0;
  int memory_fd_ = -1;  // /proc/thread-self/mem, opened at the first unreadable block
  bool unreadable_failed_ = false;
  uint64_t* seen_ = nullptr;    // leak classification: visited from a direct leak
  uint32_t* prefix_ = nullptr;  // live blocks before each bitmap word (for rank)
  uint32_t* counts_ = nullptr;  // per live block, by rank: inbound references
  uintptr_t* worklist_ = nullptr;
  uint32_t* worklist_nodes_ = nullptr;  // with a graph: each worklist entry's node (rank + 1)
  size_t worklist_size_ = 0, worklist_capacity_ = 0;
  LeakedBlock* leaks_ = nullptr;
  ReferenceGraph* graph_ = nullptr;
  bool scanning_roots_ = true;  // until propagate(): references found are root references
  struct Mapping {
    void* start;
    size_t length;
  };
  Mapping mappings_[9] = {};
  MarkFigures figures_;
};

}  // namespace heapkeeper::collect
