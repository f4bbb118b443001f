// The reachable heap as a graph, and what it answers once the world runs again: who holds a
// block (shortest retainer paths from a root), and what a block or an allocation site retains (the
// bytes that would become unreachable without it).
//
// Nodes are the live blocks by rank (their order in the live bitmap, as the marker numbers them),
// plus a virtual root, node 0, whose edges are the references found in root ranges. The marker
// records edges while it marks (world stopped): each reachable block is scanned exactly once, so a
// block's out-edges are one contiguous run of an append-only array, and recording costs one store
// per reference. Everything else runs after the world resumes:
//
// - Retained size comes from the dominator tree (block d dominates b when every path from the
//   roots to b passes through d): a block's retained bytes are its own plus those of the blocks it
//   immediately dominates, as in heap tools for managed runtimes (Eclipse MAT, Chrome DevTools).
//   The tree is built with Lengauer and Tarjan's algorithm ("A fast algorithm for finding
//   dominators in a flowgraph", 1979), in its simple form with path compression, iteratively: a
//   heap graph's paths are far deeper than a thread's stack.
// - What a whole allocation site retains is not a sum over the tree: two blocks of one site that
//   share a child do not dominate it alone, yet freeing both frees it. retained_by_set() walks the
//   graph from the root avoiding the set; what it cannot reach is what the set retains. Exact, at
//   the cost of one walk per site asked about.
// - Shortest retainer paths come from a breadth-first walk from the root.
//
// All memory is mapped (alloc::map_internal), never taken from the heap: recording runs while the
// world is stopped, and the arrays are heapkeeper's own (never roots).
#pragma once

#include <cstddef>
#include <cstdint>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace heapkeeper::collect {

// Where a root word lies, to name the root of a retainer path as a person would.
enum class RootKind : uint32_t {
  kModuleData = 1,  // a module's data, bss or relro: a global
  kStack = 2,       // a thread's stack (TLS and the thread control block sit at its top)
  kRegisters = 3,   // a stopped thread's registers
  kAnonymous = 4,   // another anonymous writable mapping (a custom pool, an interpreter's arena)
  kKernel = 5,      // a pointer handed to the kernel (epoll data, timer and AIO sigevents)
  kBootstrap = 6,   // blocks allocated before heapkeeper's heap existed
};
struct RootRange {
  uintptr_t start = 0, end = 0;
  RootKind kind = RootKind::kAnonymous;
  int32_t thread = 0;           // kStack, kRegisters: the thread's id
  uintptr_t stack_pointer = 0;  // kStack: where the thread's stack pointer was
};

class ReferenceGraph {
 public:
  static constexpr uint32_t kRoot = 0;
  static constexpr uint32_t kNone = UINT32_MAX;

  ReferenceGraph() = default;
  ~ReferenceGraph();
  ReferenceGraph(const ReferenceGraph&) = delete;
  ReferenceGraph& operator=(const ReferenceGraph&) = delete;

  // --- Recording.
  // Before the world stops: maps the stream, room for `stream_capacity` 32-bit words (one per
  // reference, kBlockRecord per scanned block), and faults in the part that `expected_blocks`
  // should need. A page fault costs microseconds (more in a virtual machine): taken here, not in
  // the pause.
  static constexpr uint64_t kBlockRecord = 3;      // words of a block's record (under 64 MiB)
  static constexpr uint64_t kLongBlockRecord = 5;  // and of a larger block's
  // Block numbers stay below the stream's block bit (and kNone).
  static constexpr uint32_t kMaxBlocks = (uint32_t{1} << 31) - 2;
  bool prepare(uint64_t stream_capacity, uint64_t expected_blocks);
  // With the world stopped: room for `block_count` blocks (numbered 1..block_count, at most
  // kMaxBlocks).
  bool begin(uint32_t block_count);
  // A root word at `word_address` points into `block`. The first such word is kept per block (the
  // start of its shortest retainer paths).
  void add_root_edge(uint32_t block, uintptr_t word_address);
  // The marker scans `block` now: `bytes` long, its user bytes `user_offset` (0 or a power of two)
  // past its region's start, allocated from stack `stack_id`. Read while the world is stopped,
  // since the block may be freed once it runs again; where the region lies is not recorded, the
  // block's number says it (set_block_addresses). add_edge() calls until the next open_block() are
  // its references. Both append to one sequential stream, so the pause pays one sequential store
  // per reference and three per block, never a random write into per-block arrays (those are
  // built from the stream in analyse()).
  void open_block(uint32_t block, uint64_t bytes, uint64_t user_offset, uint32_t stack_id) {
    const bool long_record = bytes >= kLongSize;
    if (stream_size_ + (long_record ? kLongBlockRecord : kBlockRecord) > stream_capacity_) {
      overflowed_ = true;
      return;
    }
    uint32_t* record = stream_ + stream_size_;
    const auto offset_shift = static_cast<uint32_t>(user_offset == 0 ? 0 : __builtin_ctzll(user_offset));
    store(record, block | kBlockBit);  // a reference never has the bit: this starts a block's record
    store(record + 1, stack_id);
    if (!long_record) {
      store(record + 2, static_cast<uint32_t>(bytes) | offset_shift << kSizeBits);
      stream_size_ += kBlockRecord;
    } else {
      store(record + 2, kLongSize | offset_shift << kSizeBits);
      store(record + 3, static_cast<uint32_t>(bytes));
      store(record + 4, static_cast<uint32_t>(bytes >> 32));
      stream_size_ += kLongBlockRecord;
    }
  }
  void add_edge(uint32_t target) {
    if (stream_size_ < stream_capacity_) {
      store(stream_ + stream_size_++, target);
    } else {
      overflowed_ = true;
    }
  }
  // After the last record, before the stream is read on another thread.
  void end_recording() {
#if defined(__x86_64__)
    _mm_sfence();
#endif
  }
  // After the pause: where the blocks lie. Block b is the b-th set bit of the live bitmap the
  // marker numbered blocks by (one bit per 16-byte granule from `heap_base`, 64 a word); copied,
  // so a copy of a few megabytes stands for a 64-bit address per block. Needed by analyse().
  bool set_block_addresses(uintptr_t heap_base, const uint64_t* live_words, size_t word_count);
  // Where `block`'s user bytes start.
  uintptr_t region(uint32_t block) const;
  uint64_t size(uint32_t block) const { return size_[block] & kNodeSizeMask; }
  uint32_t stack_id(uint32_t block) const { return stack_[block]; }
  // False when references did not fit: the analysis is then refused rather than wrong.
  bool complete() const { return !overflowed_ && (stream_ != nullptr || analysed_); }

  // The root ranges scanned, recorded in the pause so root words can be named afterwards (at
  // most kMaxRootRanges; later ones are looked up as anonymous memory).
  static constexpr size_t kMaxRootRanges = 4096;
  void add_root_range(const RootRange& range) {
    if (root_ranges_ != nullptr && root_range_count_ < kMaxRootRanges) root_ranges_[root_range_count_++] = range;
  }
  // The recorded range holding `word_address` (the first recorded that does), or null.
  const RootRange* root_range_of(uintptr_t word_address) const;

  // --- Analysis (world running).
  // Dominators, retained sizes and shortest-path distances. False if the graph is incomplete or
  // memory could not be mapped.
  bool analyse();
  bool analysed() const { return analysed_; }
  uint32_t block_count() const { return blocks_; }
  uint64_t edge_count() const { return edge_count_; }  // after analyse()
  bool reachable(uint32_t block) const { return analysed_ && block <= blocks_ && distance_[block] != kNone; }
  // Bytes that become unreachable if `block` alone is freed (its own included); 0 if unreachable.
  uint64_t retained_bytes(uint32_t block) const;
  // Hops from the root (1: a root word points at it); kNone if unreachable.
  uint32_t distance(uint32_t block) const { return analysed_ && block <= blocks_ ? distance_[block] : kNone; }
  // The block whose user bytes hold `address` (interior included), among the blocks the marker
  // scanned (reachable ones); 0 if none.
  uint32_t block_at(uintptr_t address) const;
  // kRoot when only the roots dominate it; kNone if unreachable.
  uint32_t immediate_dominator(uint32_t block) const;
  // Bytes that become unreachable if every block of `members` is gone (their own included).
  uint64_t retained_by_set(const uint32_t* members, size_t count);
  // Up to `path_limit` shortest paths from a root to `block`, through distinct last referrers,
  // shortest first. Paths are written into `out` one after another, each from the block the root
  // points at down to `block`; lengths[i] is the i-th path's length and root_words[i] the root word
  // it starts from. Returns how many paths were written (fewer when `out_capacity` runs out).
  size_t retainer_paths(uint32_t block, size_t path_limit, uint32_t* out, size_t out_capacity, size_t* lengths,
                        uintptr_t* root_words) const;
  // Each block's out-references (after analyse(); node 0's are the blocks roots point at).
  const uint32_t* references(uint32_t node, uint32_t& count) const;

 private:
  // The stream is written once and read only after the pause: stores that bypass the cache keep
  // it from evicting what marking reads again (the bitmaps, the reference counts), and skip
  // reading each line before writing it.
  static void store(uint32_t* word, uint32_t value) {
#if defined(__x86_64__)
    _mm_stream_si32(reinterpret_cast<int*>(word), static_cast<int>(value));
#else
    *word = value;
#endif
  }
  // The stream: a word with the block bit starts a block's record (the block's number, its stack
  // id, then its size and user offset's log2 in one word, or the size in two more words after
  // kLongSize when it is 64 MiB or more); any other word is a reference (a block's number).
  static constexpr uint32_t kBlockBit = uint32_t{1} << 31;
  static constexpr unsigned kSizeBits = 26;
  static constexpr uint32_t kLongSize = (uint32_t{1} << kSizeBits) - 1;
  // Per node after indexing: the size, and the user offset's log2 in the top bits.
  static constexpr unsigned kNodeShiftBit = 58;
  static constexpr uint64_t kNodeSizeMask = (uint64_t{1} << kNodeShiftBit) - 1;
  struct Array {
    void* data = nullptr;
    size_t bytes = 0;
  };
  void* map_array(Array& array, size_t bytes);
  void unmap_array(Array& array);
  bool index_stream();
  bool copy_edges();
  bool build_predecessors();
  bool compute_dominators();
  void compute_distances();
  uint32_t eval(uint32_t v);

  uint32_t blocks_ = 0;  // nodes are 0..blocks_
  uint64_t stream_capacity_ = 0, stream_size_ = 0, edge_count_ = 0;
  bool overflowed_ = false, analysed_ = false;

  // Recording.
  Array stream_array_, root_targets_array_, root_word_array_, root_ranges_array_;
  RootRange* root_ranges_ = nullptr;
  size_t root_range_count_ = 0;
  uint32_t* stream_ = nullptr;
  uint32_t* root_targets_ = nullptr;
  uint32_t root_target_count_ = 0;
  uintptr_t* root_word_ = nullptr;  // per block: the first root word that points at it, or 0

  // Where blocks lie (set_block_addresses): the live bitmap, and the blocks before each word.
  Array live_array_, live_prefix_array_;
  uintptr_t heap_base_ = 0;
  const uint64_t* live_ = nullptr;
  const uint32_t* live_prefix_ = nullptr;
  size_t live_words_ = 0;

  // Built from the stream by analyse(), which then unmaps it: node v's references are
  // edges_[first_[v]] up to edges_[first_[v + 1]], in the order the marker found them.
  Array first_array_, edges_array_, size_array_, stack_array_;
  uint64_t* first_ = nullptr;  // blocks_ + 2 entries
  uint32_t* edges_ = nullptr;
  uint64_t* size_ = nullptr;  // the size | the user offset's log2 << kNodeShiftBit
  uint32_t* stack_ = nullptr;

  // Analysis.
  Array pred_begin_array_, preds_array_, idom_array_, retained_array_, distance_array_;
  uint64_t* pred_begin_ = nullptr;  // per node, blocks_ + 2 entries
  uint32_t* preds_ = nullptr;
  uint32_t* idom_ = nullptr;
  uint64_t* retained_ = nullptr;
  uint32_t* distance_ = nullptr;  // hops from the root, kNone if unreachable
  // Lengauer-Tarjan's working arrays, unmapped once the tree is built (and two borrowed: the
  // distances' and the queue's, not yet in use then).
  Array work_array_;
  uint32_t *dfnum_ = nullptr, *vertex_ = nullptr, *parent_ = nullptr, *semi_ = nullptr, *ancestor_ = nullptr,
           *label_ = nullptr, *bucket_head_ = nullptr, *bucket_next_ = nullptr, *chain_ = nullptr;
  // retained_by_set's visited marks (one bit per node) and queue.
  Array visited_array_, queue_array_;
};

}  // namespace heapkeeper::collect
