// Implementation of the reference graph and its analyses (see reference_graph.h).
#include "collector/reference_graph.h"

#include <sys/mman.h>

#include <algorithm>

#include "allocator/internal_mappings.h"

namespace heapkeeper::collect {

ReferenceGraph::~ReferenceGraph() {
  for (Array* array :
       {&stream_array_, &root_targets_array_, &root_word_array_, &root_ranges_array_, &live_array_, &live_prefix_array_,
        &first_array_, &edges_array_, &size_array_, &stack_array_, &pred_begin_array_, &preds_array_, &idom_array_,
        &retained_array_, &distance_array_, &work_array_, &visited_array_, &queue_array_})
    unmap_array(*array);
}

void* ReferenceGraph::map_array(Array& array, size_t bytes) {
  unmap_array(array);
  bytes = (std::max<size_t>(bytes, 1) + 4095) & ~size_t{4095};
  array.data = alloc::map_internal(bytes, true);
  array.bytes = array.data != nullptr ? bytes : 0;
  // The analysis touches every page of its arrays at random: huge pages take a fault per 2 MiB
  // and spare the TLB.
  if (array.data != nullptr && bytes >= (size_t{4} << 20)) madvise(array.data, bytes, MADV_HUGEPAGE);
  return array.data;
}

void ReferenceGraph::unmap_array(Array& array) {
  if (array.data != nullptr) alloc::unmap_internal(array.data, array.bytes);
  array = {};
}

bool ReferenceGraph::prepare(uint64_t stream_capacity, uint64_t expected_blocks) {
  stream_capacity_ = stream_capacity;
  stream_ = static_cast<uint32_t*>(map_array(stream_array_, stream_capacity_ * sizeof(uint32_t)));
  root_ranges_ = static_cast<RootRange*>(map_array(root_ranges_array_, kMaxRootRanges * sizeof(RootRange)));
  root_range_count_ = 0;
  if (stream_ == nullptr || root_ranges_ == nullptr) {
    stream_ = nullptr;
    return false;
  }
  // Written sequentially: huge pages take one fault per 2 MiB instead of per 4 KiB.
  madvise(stream_, stream_array_.bytes, MADV_HUGEPAGE);
  // Most heap blocks hold a pointer or two.
  const size_t expected = std::min<size_t>(
      stream_array_.bytes, ((expected_blocks * (kBlockRecord + 2) * sizeof(uint32_t)) + 4095) & ~size_t{4095});
#ifdef MADV_POPULATE_WRITE
  if (expected > 0 && madvise(stream_, expected, MADV_POPULATE_WRITE) == 0) return true;
#endif
  for (size_t offset = 0; offset < expected; offset += 4096)
    static_cast<volatile char*>(stream_array_.data)[offset] = 0;
  return true;
}

bool ReferenceGraph::set_block_addresses(uintptr_t heap_base, const uint64_t* live_words, size_t word_count) {
  auto* live = static_cast<uint64_t*>(map_array(live_array_, word_count * sizeof(uint64_t)));
  auto* prefix = static_cast<uint32_t*>(map_array(live_prefix_array_, (word_count + 1) * sizeof(uint32_t)));
  if (live == nullptr || prefix == nullptr) return false;
  uint32_t blocks = 0;
  for (size_t w = 0; w < word_count; ++w) {
    live[w] = live_words[w];
    prefix[w] = blocks;
    blocks += static_cast<uint32_t>(__builtin_popcountll(live[w]));
  }
  prefix[word_count] = blocks;
  heap_base_ = heap_base;
  live_ = live;
  live_prefix_ = prefix;
  live_words_ = word_count;
  return true;
}

// The block's region is its bit in the live bitmap: the word holding it by binary search over the
// counts before each word, then the bit within the word.
uintptr_t ReferenceGraph::region(uint32_t block) const {
  if (live_ == nullptr || block == kRoot || block > live_prefix_[live_words_]) return 0;
  const uint32_t rank = block - 1;
  const size_t word =
      static_cast<size_t>(std::upper_bound(live_prefix_, live_prefix_ + live_words_, rank) - live_prefix_) - 1;
  uint64_t bits = live_[word];
  for (uint32_t skip = rank - live_prefix_[word]; skip > 0; --skip) bits &= bits - 1;
  const size_t granule = word * 64 + static_cast<size_t>(__builtin_ctzll(bits));
  const unsigned offset_shift = static_cast<unsigned>(size_[block] >> kNodeShiftBit);
  return heap_base_ + granule * 16 + ((uintptr_t{1} << offset_shift) & ~uintptr_t{1});
}

bool ReferenceGraph::begin(uint32_t block_count) {
  if (stream_ == nullptr || block_count > kMaxBlocks) return false;
  blocks_ = block_count;
  const size_t nodes = size_t{block_count} + 1;
  stream_size_ = edge_count_ = 0;
  overflowed_ = analysed_ = false;
  root_target_count_ = 0;
  root_targets_ = static_cast<uint32_t*>(map_array(root_targets_array_, nodes * sizeof(uint32_t)));
  root_word_ = static_cast<uintptr_t*>(map_array(root_word_array_, nodes * sizeof(uintptr_t)));
  if (root_targets_ == nullptr || root_word_ == nullptr) {
    stream_ = nullptr;
    return false;
  }
  return true;
}

const RootRange* ReferenceGraph::root_range_of(uintptr_t word_address) const {
  for (size_t i = 0; i < root_range_count_; ++i) {
    if (word_address >= root_ranges_[i].start && word_address < root_ranges_[i].end) return &root_ranges_[i];
  }
  return nullptr;
}

void ReferenceGraph::add_root_edge(uint32_t block, uintptr_t word_address) {
  if (block == kRoot || block > blocks_ || root_word_[block] != 0) return;
  root_word_[block] = word_address != 0 ? word_address : 1;
  root_targets_[root_target_count_++] = block;
}

// Per-node arrays from the recorded stream: what the marker read of each block, and how many
// references it holds (in first_[v + 1], summed into where its references start).
bool ReferenceGraph::index_stream() {
  const size_t nodes = size_t{blocks_} + 1;
  first_ = static_cast<uint64_t*>(map_array(first_array_, (nodes + 1) * sizeof(uint64_t)));
  size_ = static_cast<uint64_t*>(map_array(size_array_, nodes * sizeof(uint64_t)));
  stack_ = static_cast<uint32_t*>(map_array(stack_array_, nodes * sizeof(uint32_t)));
  if (first_ == nullptr || size_ == nullptr || stack_ == nullptr) return false;
  uint32_t open = kNone;
  for (uint64_t i = 0; i < stream_size_;) {
    if ((stream_[i] & kBlockBit) == 0) {  // a reference of the open block
      if (stream_[i] > blocks_ || open == kNone) return false;
      ++first_[open + 1];
      ++i;
      continue;
    }
    if (i + kBlockRecord > stream_size_) return false;
    const uint32_t* record = stream_ + i;
    open = record[0] & ~kBlockBit;
    if (open == kRoot || open > blocks_ || first_[open + 1] != 0) return false;  // each block once
    stack_[open] = record[1];
    uint64_t bytes = record[2] & kLongSize;
    const uint64_t offset_shift = record[2] >> kSizeBits;
    i += kBlockRecord;
    if (bytes == kLongSize) {
      if (i + 2 > stream_size_) return false;
      bytes = record[3] | static_cast<uint64_t>(record[4]) << 32;
      i += 2;
    }
    size_[open] = (bytes & kNodeSizeMask) | offset_shift << kNodeShiftBit;
  }
  for (size_t v = 1; v <= nodes; ++v) first_[v] += first_[v - 1];
  edge_count_ = first_[nodes];
  return true;
}

// The references, by node, out of the stream; the stream is unmapped: it held the blocks' records
// too, and the analysis needs the memory.
bool ReferenceGraph::copy_edges() {
  edges_ = static_cast<uint32_t*>(map_array(edges_array_, edge_count_ * sizeof(uint32_t)));
  if (edges_ == nullptr) return false;
  uint64_t cursor = 0;
  for (uint64_t i = 0; i < stream_size_;) {
    const uint32_t word = stream_[i];
    if ((word & kBlockBit) == 0) {
      edges_[cursor++] = word;
      ++i;
      continue;
    }
    cursor = first_[word & ~kBlockBit];
    i += (stream_[i + 2] & kLongSize) == kLongSize ? kLongBlockRecord : kBlockRecord;
  }
  unmap_array(stream_array_);
  stream_ = nullptr;
  return true;
}

const uint32_t* ReferenceGraph::references(uint32_t node, uint32_t& count) const {
  if (node == kRoot) {
    count = root_target_count_;
    return root_targets_;
  }
  count = static_cast<uint32_t>(first_[node + 1] - first_[node]);
  return edges_ + first_[node];
}

// Predecessor lists in compressed form: pred_begin_[v] .. pred_begin_[v + 1].
bool ReferenceGraph::build_predecessors() {
  const size_t nodes = size_t{blocks_} + 1;
  pred_begin_ = static_cast<uint64_t*>(map_array(pred_begin_array_, (nodes + 1) * sizeof(uint64_t)));
  preds_ = static_cast<uint32_t*>(map_array(preds_array_, (edge_count_ + root_target_count_) * sizeof(uint32_t)));
  if (pred_begin_ == nullptr || preds_ == nullptr) return false;
  for (uint32_t v = 0; v <= blocks_; ++v) {
    uint32_t count = 0;
    const uint32_t* out = references(v, count);
    for (uint32_t i = 0; i < count; ++i) ++pred_begin_[out[i] + 1];
  }
  for (size_t v = 1; v <= nodes; ++v) pred_begin_[v] += pred_begin_[v - 1];
  // Fill using pred_begin_[v] as a cursor, then shift back.
  for (uint32_t v = 0; v <= blocks_; ++v) {
    uint32_t count = 0;
    const uint32_t* out = references(v, count);
    for (uint32_t i = 0; i < count; ++i) preds_[pred_begin_[out[i]]++] = v;
  }
  for (size_t v = nodes; v > 0; --v) pred_begin_[v] = pred_begin_[v - 1];
  pred_begin_[0] = 0;
  return true;
}

// Lengauer-Tarjan's EVAL with path compression, without recursion: the ancestor chains of a
// long linked list would overflow a stack. Works on depth-first numbers, like everything below.
uint32_t ReferenceGraph::eval(uint32_t v) {
  if (ancestor_[v] == kNone) return v;
  // The chain of vertices whose ancestor's ancestor exists, deepest last, kept in the DFS's
  // cursor array (free once the numbering is done).
  uint32_t* chain = chain_;
  size_t length = 0;
  for (uint32_t x = v; ancestor_[ancestor_[x]] != kNone; x = ancestor_[x]) chain[length++] = x;
  while (length > 0) {
    const uint32_t x = chain[--length];
    const uint32_t a = ancestor_[x];
    if (semi_[label_[a]] < semi_[label_[x]]) label_[x] = label_[a];
    ancestor_[x] = ancestor_[a];
  }
  return label_[v];
}

// The algorithm runs on depth-first numbers rather than node ids: the vertices it touches
// together are then near each other in memory (a heap's nodes, numbered by rank, are scattered),
// which on a few million blocks halves the time.
bool ReferenceGraph::compute_dominators() {
  const size_t nodes = size_t{blocks_} + 1;
  // Ten arrays of one 32-bit word per node: vertex, parent, semi, ancestor, label, bucket head,
  // bucket next (all by depth-first number) of their own; dfnum (by node) in the immediate
  // dominators' array, overwritten by them at the end (and kNone for unreachable nodes in both);
  // the DFS cursor (then the compression chain) in the distances' array and the DFS stack (then
  // the immediate dominators by number) in the queue's, both unused until compute_distances().
  // An even stride keeps semi_ 8-byte aligned: semi_ and ancestor_ together hold 64-bit sums at
  // the end.
  const size_t stride = (nodes + 1) & ~size_t{1};
  uint32_t* work = static_cast<uint32_t*>(map_array(work_array_, 7 * stride * sizeof(uint32_t)));
  idom_ = static_cast<uint32_t*>(map_array(idom_array_, nodes * sizeof(uint32_t)));
  retained_ = static_cast<uint64_t*>(map_array(retained_array_, nodes * sizeof(uint64_t)));
  if (work == nullptr || idom_ == nullptr || retained_ == nullptr) return false;
  dfnum_ = idom_;
  vertex_ = work;
  parent_ = work + stride;
  semi_ = work + 2 * stride;
  ancestor_ = work + 3 * stride;
  label_ = work + 4 * stride;
  bucket_head_ = work + 5 * stride;
  bucket_next_ = work + 6 * stride;
  uint32_t* cursor = distance_;
  chain_ = cursor;
  uint32_t* stack = static_cast<uint32_t*>(queue_array_.data);
  std::fill(dfnum_, dfnum_ + nodes, kNone);
  // Depth-first numbering from the root, iteratively; parent_ holds the parent's number.
  uint32_t visited = 0;
  size_t depth = 0;
  dfnum_[kRoot] = visited;
  vertex_[visited] = kRoot;
  parent_[visited++] = kNone;
  stack[depth] = kRoot;
  cursor[depth++] = 0;
  while (depth > 0) {
    const uint32_t v = stack[depth - 1];
    uint32_t count = 0;
    const uint32_t* out = references(v, count);
    if (cursor[depth - 1] == count) {
      --depth;
      continue;
    }
    const uint32_t w = out[cursor[depth - 1]++];
    if (dfnum_[w] != kNone) continue;
    dfnum_[w] = visited;
    vertex_[visited] = w;
    parent_[visited++] = dfnum_[v];
    stack[depth] = w;
    cursor[depth++] = 0;
  }
  for (uint32_t i = 0; i < visited; ++i) {
    semi_[i] = i;
    ancestor_[i] = kNone;
    label_[i] = i;
    bucket_head_[i] = kNone;
  }
  uint32_t* idom = stack;  // by depth-first number; the DFS stack is free now
  for (uint32_t w = visited - 1; w >= 1; --w) {
    const uint32_t node = vertex_[w];
    for (uint64_t k = pred_begin_[node]; k < pred_begin_[node + 1]; ++k) {
      const uint32_t v = dfnum_[preds_[k]];
      if (v == kNone) continue;  // not reachable from the root
      const uint32_t u = eval(v);
      if (semi_[u] < semi_[w]) semi_[w] = semi_[u];
    }
    const uint32_t s = semi_[w];
    bucket_next_[w] = bucket_head_[s];
    bucket_head_[s] = w;
    const uint32_t p = parent_[w];
    ancestor_[w] = p;
    for (uint32_t v = bucket_head_[p]; v != kNone; v = bucket_next_[v]) {
      const uint32_t u = eval(v);
      idom[v] = semi_[u] < semi_[v] ? u : p;
    }
    bucket_head_[p] = kNone;
  }
  for (uint32_t w = 1; w < visited; ++w) {
    if (idom[w] != semi_[w]) idom[w] = idom[idom[w]];
  }
  // Retained sizes: children before parents, that is in reverse depth-first order (a dominator
  // is a DFS ancestor, so it comes earlier). Summed by number, then stored by node.
  auto* retained = reinterpret_cast<uint64_t*>(semi_);  // semi_ and ancestor_: 8 bytes a vertex
  for (uint32_t w = 0; w < visited; ++w) retained[w] = size_[vertex_[w]] & kNodeSizeMask;
  retained[0] = 0;
  for (uint32_t w = visited - 1; w >= 1; --w) retained[idom[w]] += retained[w];
  for (uint32_t w = 1; w < visited; ++w) {
    idom_[vertex_[w]] = vertex_[idom[w]];  // over its dfnum, read no more
    retained_[vertex_[w]] = retained[w];
  }
  idom_[kRoot] = kNone;
  unmap_array(work_array_);
  dfnum_ = vertex_ = parent_ = semi_ = ancestor_ = label_ = bucket_head_ = bucket_next_ = chain_ = nullptr;
  return true;
}

void ReferenceGraph::compute_distances() {
  const size_t nodes = size_t{blocks_} + 1;
  for (size_t v = 0; v < nodes; ++v) distance_[v] = kNone;
  uint32_t* queue = static_cast<uint32_t*>(queue_array_.data);
  size_t head = 0, tail = 0;
  distance_[kRoot] = 0;
  queue[tail++] = kRoot;
  while (head < tail) {
    const uint32_t v = queue[head++];
    uint32_t count = 0;
    const uint32_t* out = references(v, count);
    for (uint32_t i = 0; i < count; ++i) {
      const uint32_t w = out[i];
      if (distance_[w] != kNone) continue;
      distance_[w] = distance_[v] + 1;
      queue[tail++] = w;
    }
  }
}

bool ReferenceGraph::analyse() {
  if (analysed_) return true;
  if (!complete() || live_ == nullptr || live_prefix_[live_words_] != blocks_ || !index_stream() || !copy_edges())
    return false;
  const size_t nodes = size_t{blocks_} + 1;
  distance_ = static_cast<uint32_t*>(map_array(distance_array_, nodes * sizeof(uint32_t)));
  if (distance_ == nullptr || map_array(queue_array_, nodes * sizeof(uint32_t)) == nullptr) return false;
  if (!build_predecessors() || !compute_dominators()) return false;
  compute_distances();
  analysed_ = true;
  return true;
}

uint64_t ReferenceGraph::retained_bytes(uint32_t block) const { return reachable(block) ? retained_[block] : 0; }

// The nearest block starting at or below `address` is the only one whose bytes can hold it:
// regions do not overlap.
uint32_t ReferenceGraph::block_at(uintptr_t address) const {
  if (!analysed_ || address < heap_base_ || live_words_ == 0) return 0;
  const size_t granule = std::min<size_t>((address - heap_base_) / 16, live_words_ * 64 - 1);
  size_t word = granule / 64;
  uint64_t bits = live_[word] & (~uint64_t{0} >> (63 - granule % 64));  // bits at or below the granule
  while (bits == 0 && word > 0) bits = live_[--word];
  if (bits == 0) return 0;
  const auto below = static_cast<uint32_t>(__builtin_popcountll(bits & ~(uint64_t{1} << (63 - __builtin_clzll(bits)))));
  const uint32_t block = live_prefix_[word] + below + 1;
  if (distance_[block] == kNone) return 0;
  const uintptr_t user = region(block);
  return address >= user && address - user < std::max<uint64_t>(size(block), 1) ? block : 0;
}

uint32_t ReferenceGraph::immediate_dominator(uint32_t block) const { return reachable(block) ? idom_[block] : kNone; }

uint64_t ReferenceGraph::retained_by_set(const uint32_t* members, size_t count) {
  if (!analysed_) return 0;
  const size_t words = (size_t{blocks_} + 1 + 63) / 64;
  uint64_t* bits = static_cast<uint64_t*>(map_array(visited_array_, 2 * words * sizeof(uint64_t)));
  if (bits == nullptr) return 0;
  uint64_t* reached = bits;
  uint64_t* excluded = bits + words;
  auto test = [](const uint64_t* set, uint32_t v) { return (set[v >> 6] >> (v & 63)) & 1; };
  auto add = [](uint64_t* set, uint32_t v) { set[v >> 6] |= uint64_t{1} << (v & 63); };
  for (size_t i = 0; i < count; ++i) {
    if (members[i] != kRoot && members[i] <= blocks_) add(excluded, members[i]);
  }
  // Walk from the root through everything but the members.
  uint32_t* queue = static_cast<uint32_t*>(queue_array_.data);
  size_t head = 0, tail = 0;
  add(reached, kRoot);
  queue[tail++] = kRoot;
  while (head < tail) {
    uint32_t out_count = 0;
    const uint32_t* out = references(queue[head++], out_count);
    for (uint32_t i = 0; i < out_count; ++i) {
      const uint32_t w = out[i];
      if (test(reached, w) || test(excluded, w)) continue;
      add(reached, w);
      queue[tail++] = w;
    }
  }
  // What was reachable and is reached no more; the members themselves included.
  uint64_t bytes = 0;
  for (uint32_t v = 1; v <= blocks_; ++v) {
    if (distance_[v] != kNone && !test(reached, v)) bytes += size_[v] & kNodeSizeMask;
  }
  unmap_array(visited_array_);
  return bytes;
}

size_t ReferenceGraph::retainer_paths(uint32_t block, size_t path_limit, uint32_t* out, size_t out_capacity,
                                      size_t* lengths, uintptr_t* root_words) const {
  if (!reachable(block) || block == kRoot) return 0;
  // The last referrers: predecessors reachable from the root, nearest first, each once.
  constexpr size_t kMaxReferrers = 64;
  uint32_t referrers[kMaxReferrers];
  size_t referrer_count = 0;
  for (uint64_t k = pred_begin_[block]; k < pred_begin_[block + 1]; ++k) {
    const uint32_t p = preds_[k];
    if (p == block || distance_[p] == kNone) continue;
    if (std::find(referrers, referrers + referrer_count, p) != referrers + referrer_count) continue;
    if (referrer_count < kMaxReferrers) {
      referrers[referrer_count++] = p;
    } else {
      // Keep the nearest: replace the farthest kept if this one is nearer.
      uint32_t* farthest = std::max_element(referrers, referrers + referrer_count,
                                            [&](uint32_t a, uint32_t b) { return distance_[a] < distance_[b]; });
      if (distance_[p] < distance_[*farthest]) *farthest = p;
    }
  }
  std::stable_sort(referrers, referrers + referrer_count,
                   [&](uint32_t a, uint32_t b) { return distance_[a] < distance_[b]; });
  size_t paths = 0, used = 0;
  for (size_t r = 0; r < referrer_count && paths < path_limit; ++r) {
    const uint32_t last = referrers[r];
    const size_t length = last == kRoot ? 1 : size_t{distance_[last]} + 1;
    if (used + length > out_capacity) break;
    // Walk back from `last` to a block the root points at, choosing any predecessor one hop nearer.
    uint32_t* path = out + used;
    path[length - 1] = block;
    uint32_t x = last;
    for (size_t i = length - 1; i > 0; --i) {
      path[i - 1] = x;
      if (distance_[x] == 1) break;
      for (uint64_t k = pred_begin_[x]; k < pred_begin_[x + 1]; ++k) {
        if (distance_[preds_[k]] == distance_[x] - 1) {
          x = preds_[k];
          break;
        }
      }
    }
    lengths[paths] = length;
    root_words[paths] = root_word_[path[0]];
    used += length;
    ++paths;
  }
  return paths;
}

}  // namespace heapkeeper::collect
