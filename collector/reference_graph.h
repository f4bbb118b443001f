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
  static constexpr uint64_t kBlockRecord = 7;
  bool prepare(uint64_t stream_capacity, uint64_t expected_blocks);
  // With the world stopped: room for `block_count` blocks (numbered 1..block_count).
  bool begin(uint32_t block_count);
  // A root word at `word_address` points into `block`. The first such word is kept per block (the
  // start of its shortest retainer paths).
  void add_root_edge(uint32_t block, uintptr_t word_address);
  // The marker scans `block` now (user bytes at `address`, `bytes` long, allocated from stack
  // `stack_id`: read while the world is stopped, since the block may be freed once it runs again);
  // add_edge() calls until the next open_block() are its references. Both append to one sequential
  // stream, so the pause pays one sequential store per reference and a few per block, never a
  // random write into per-block arrays (those are built from the stream in analyse()).
  void open_block(uint32_t block, uintptr_t address, uint64_t bytes, uint32_t stack_id) {
    if (stream_size_ + kBlockRecord > stream_capacity_) {
      overflowed_ = true;
      return;
    }
    uint32_t* record = stream_ + stream_size_;
    record[0] = kNone;  // no target is kNone: this starts a block's record
    record[1] = block;
    record[2] = stack_id;
    record[3] = static_cast<uint32_t>(bytes);
    record[4] = static_cast<uint32_t>(bytes >> 32);
    record[5] = static_cast<uint32_t>(address);
    record[6] = static_cast<uint32_t>(static_cast<uint64_t>(address) >> 32);
    stream_size_ += kBlockRecord;
  }
  void add_edge(uint32_t target) {
    if (stream_size_ < stream_capacity_) {
      stream_[stream_size_++] = target;
    } else {
      overflowed_ = true;
    }
  }
  uintptr_t region(uint32_t block) const { return region_[block]; }
  uint64_t size(uint32_t block) const { return size_[block]; }
  uint32_t stack_id(uint32_t block) const { return stack_[block]; }
  // False when references did not fit: the analysis is then refused rather than wrong.
  bool complete() const { return !overflowed_ && stream_ != nullptr; }

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
  struct Array {
    void* data = nullptr;
    size_t bytes = 0;
  };
  void* map_array(Array& array, size_t bytes);
  void unmap_array(Array& array);
  bool index_stream();
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

  // Built from the stream by analyse(): each node's references are stream_[begin_[v]] on.
  Array begin_array_, count_array_, size_array_, region_array_, stack_array_;
  uint64_t* begin_ = nullptr;
  uint32_t* count_ = nullptr;
  uint64_t* size_ = nullptr;
  uintptr_t* region_ = nullptr;
  uint32_t* stack_ = nullptr;

  // Analysis.
  Array pred_begin_array_, preds_array_, idom_array_, retained_array_, distance_array_;
  uint64_t* pred_begin_ = nullptr;  // per node, blocks_ + 2 entries
  uint32_t* preds_ = nullptr;
  uint32_t* idom_ = nullptr;
  uint64_t* retained_ = nullptr;
  uint32_t* distance_ = nullptr;  // hops from the root, kNone if unreachable
  // Lengauer-Tarjan's working arrays, unmapped once the tree is built.
  Array work_array_;
  uint32_t *dfnum_ = nullptr, *vertex_ = nullptr, *parent_ = nullptr, *semi_ = nullptr, *ancestor_ = nullptr,
           *label_ = nullptr, *bucket_head_ = nullptr, *bucket_next_ = nullptr;
  // retained_by_set's visited marks (one bit per node) and queue.
  Array visited_array_, queue_array_;
};

}  // namespace heapkeeper::collect
