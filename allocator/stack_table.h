// StackTable: every distinct allocation stack stored once, as a path in a tree of call sites, and
// named by a 32-bit id.
//
// A node is (caller node, frame): the outermost frame of a stack hangs off the root, each inner
// frame off the node of its caller, and a stack's id is the id of its innermost node. Stacks that
// share their outer frames (every stack of a thread shares main's, and a Python program's stacks
// share the interpreter's and the outer Python functions') share their nodes, as in heaptrack's
// trace tree and memray's: a node costs 8 bytes with its allocation counter (its frame is an index
// into a dictionary of the distinct words, allocator/frame_dictionary.h), and a hash slot or two,
// where a stack stored whole cost 8 bytes a frame. frames(id) walks the parents into a buffer of the
// view, innermost first.
//
// Interning is lock-free. A node's key is the hash of its whole path, so a known stack (most calls:
// the callers' caches miss far more often than stacks are new) is found by its innermost node's key
// and checked by walking its parents. A new one is built from its innermost known caller's node
// (found the same way, up to eight frames out) or else from the outermost frame inwards: each
// (parent, frame) is looked up in an
// open-addressing table of node ids and, when new, written into the node array and published with
// one compare-and-swap. The table grows by adding a larger level when the newest is three
// quarters full, so no thread ever waits for a resize; a node records the level it was inserted at, and its
// children are inserted at that level or a newer one, so a lookup probes from its parent's level
// upwards. A race can intern the same node twice under two ids (and so a stack under two ids),
// which reports merge by content (site_key). All memory is mmap'd: none comes from the tracked heap.
//
// Each node also keeps the module generation it was captured in (allocator/unloaded_modules.h):
// after a dlclose the same return address may be code of another library, so a lookup reuses a
// node of another generation only when no module holding its frame was unloaded in between (its
// parent having passed the same check), and then moves its generation forward: both name the same
// code. A library unloaded and another loaded at its addresses therefore gives new nodes to its
// frames and to every frame inside them, and only those; the new node takes the old one's slot
// (the old id stays valid), so a plugin reloaded in a loop costs one node per frame at or inside the
// plugin per reload, and no longer probe chains. Every node on a path was checked in the
// generation its leaf records, so a stack's frames are all named in the leaf's generation.
//
// Chains. A tree shares callers, not callees: in a Python program each instruction that allocates
// is its own path, and below it hang the same few C calls from the eval loop down to malloc
// (PyObject_Malloc under _PyObject_GC_New under PyDict_New...), copied under every one of them.
// So the native frames inside a stack's innermost Python frame (allocator/python_frame_word.h)
// or, in a native stack, inside its innermost return address into the interpreter loop
// (set_chain_boundary: the same frames, since the merged stack has the Python frames in that
// frame's place), when there are two or more, are interned as a path of their own (a chain:
// shared by every stack that ends in the same C calls), and the stack as its outer frames with
// one more innermost "frame", a word naming the chain, in a node whose link says so (no value of
// a word is free for it: an unwinder stepping by a frame pointer through code without unwind
// information returns whatever the frame record holds, a double such as 3.0 has bit 62 set and
// bit 63 clear, and such a frame is kept as captured). frames() expands it. The chain is found or
// made, in the capture's generation, before the stack that names it, so a chain reused across an
// unload is checked as any path is, and a chain made anew for reloaded code gets a new word and so
// new stacks. On python3's small-live-set churn: 214,000 nodes without chains, of which 116,000
// native frames under Python ones and 60,000 of native stacks the merged ones are made from.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "allocator/frame_dictionary.h"
#include "allocator/python_frame_word.h"

namespace heapkeeper::alloc {

// A stack's frames, copied out of the tree: innermost first, as captured.
struct StackView {
  static constexpr uint32_t kMaxDepth = 128;  // Config::kMaxStackDepth
  StackView() {}                              // the frames are not cleared: only the first `depth` are meaningful
  uintptr_t frames[kMaxDepth];
  uint32_t depth = 0;
  uint32_t generation = 0;  // module generation the frames are to be named in (unloaded_modules.h)
};

class StackTable {
 public:
  static constexpr uint32_t kNoStack = 0;
  static constexpr uint32_t kMaxStacks = 1u << 24;  // node ids, and so stack ids, are below this

  // Maps the table's address space: room for kMaxStacks nodes, or, when the process may map only
  // `address_space_left` more bytes (RLIMIT_AS; 0 = no limit), about 0.5% of that. Untouched, the
  // mappings cost no memory, but under a limit they cost the program room.
  bool initialize(uint64_t address_space_left = 0);
  // A hash of a stack's frames (site_key's basis).
  static uint64_t hash(const uintptr_t* frames, uint32_t depth);
  // Returns the id of this stack (innermost first; frames past StackView::kMaxDepth are dropped) as
  // captured in module generation `generation` (the value of module_generation() read before the
  // capture), interning it if new; kNoStack if the table is full or `depth` is 0. `made`, if given,
  // is set when this call is the first to hand the id out as a stack.
  uint32_t intern(const uintptr_t* frames, uint32_t depth, uint32_t generation, bool* made = nullptr);
  // The frames of stack `id`; depth 0 for an id not handed out. Walks `depth` nodes (no allocation,
  // no lock: safe with the world stopped and in a signal handler, given room for the view).
  StackView frames(uint32_t id) const;
  // What reports group allocation sites by: equal exactly when two stacks have the same frames and
  // name them in the same modules (ids of one stack interned twice under a race, or in generations
  // between which none of its modules was unloaded, share it). Not the interning hash.
  uint64_t site_key(uint32_t id) const;
  // Allocations made from each stack, for allocation rates per site. Plain load and store, not an
  // atomic add: two threads counting the same stack at the same instant may lose one count, which
  // is cheaper on the hot path than a shared read-modify-write and good enough for a rate.
  //
  // 64-bit counts kept as an 8-bit low part in each node and the rest in an array of its own,
  // written when a low part wraps. Every node's counter is touched (stacks' ids are spread among
  // their prefixes' node ids), so its bytes count on every node: one byte fits beside the node's
  // 24-bit frame, in 8 bytes a node where a 32-bit low half made 12 (0.8 MiB of python3's object
  // churn, 205,000 nodes). The high parts' pages are written only for stacks past 256
  // allocations, a few hundred there (347 stacks on 8 of the array's 200 pages). A reader that
  // meets a wrap half done sees a count 256 short, once (allocations() re-reads the high part
  // around the low one, which catches the wrap done between them but not one in progress).
  void count_allocation(uint32_t id) {
    if (id >= max_nodes_) return;
    const auto low = static_cast<uint8_t>(nodes_[id].allocations.load(std::memory_order_relaxed) + 1);
    nodes_[id].allocations.store(low, std::memory_order_relaxed);
    if (__builtin_expect(low == 0, 0))
      allocation_wraps_[id].store(allocation_wraps_[id].load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  // Sets a stack's count: for tests of the wrap of the low part.
  void set_allocations_for_testing(uint32_t id, uint64_t count) {
    nodes_[id].allocations.store(static_cast<uint8_t>(count), std::memory_order_relaxed);
    allocation_wraps_[id].store(count >> kCountLowBits, std::memory_order_relaxed);
  }
  uint64_t allocations(uint32_t id) const {
    if (id >= max_nodes_) return 0;
    uint64_t high = allocation_wraps_[id].load(std::memory_order_acquire);
    for (;;) {
      const uint8_t low = nodes_[id].allocations.load(std::memory_order_acquire);
      const uint64_t again = allocation_wraps_[id].load(std::memory_order_acquire);
      if (again == high) return (high << kCountLowBits) | low;
      high = again;
    }
  }
  // Return addresses in [low, high) (an interpreter's loop: python_frames.h) end a chain, as a
  // Python frame's word does (see "Chains" above). Set once, before threads allocate under it.
  void set_chain_boundary(uintptr_t low, uintptr_t high) {
    boundary_high_.store(high, std::memory_order_relaxed);
    boundary_low_.store(low, std::memory_order_release);
  }
  // Distinct stacks: ids intern() has handed out (a stack interned twice in a race counts twice).
  uint32_t count() const { return stacks_.load(std::memory_order_relaxed); }
  // Nodes made so far (including those of stacks that are only prefixes of others, and race losers).
  uint32_t node_count() const { return next_id_.load(std::memory_order_relaxed) - 1; }
  // Slots of the lookup levels in use: nodes findable by their path (a node that took the slot of
  // one standing for unloaded code does not add one).
  uint64_t indexed_nodes() const;

 private:
  // Level sizes, in slots: 2^12, 2^13, 2^14, 2^15, then each size twice from 2^16 on (2^16, 2^16,
  // 2^17, 2^17, ...). A level opens when the newest is three quarters full, and is mostly empty
  // when it opens: doubling every level, the newest held a sixteenth of python3's 215,000 nodes
  // (small-live-set churn) in 1 MiB of its 2 MiB of slots. Growing by a factor of about 1.4 from
  // 2^16 on keeps the same number of levels there (7) in 1.23 MiB, averages 1.75 slots a node
  // over sizes from 20,000 to 2,000,000 nodes where doubling averaged 1.95, and probes at most
  // three more levels up to two million nodes. Twenty levels hold 2^24 nodes (kMaxStacks).
  static constexpr unsigned kLevels = 20;
  static constexpr unsigned level_shift(unsigned index) { return index < 4 ? 12 + index : 16 + (index - 4) / 2; }
  static_assert((((uint64_t{1} << 24) - (uint64_t{1} << 16)) * 2 + (uint64_t{1} << 16) - (uint64_t{1} << 12)) * 3 / 4 >=
                    uint64_t{1} << 24,
                "the levels' slots, three quarters full, hold kMaxStacks nodes");
  struct Level {
    std::atomic<uint32_t>* slots;  // tag (8 bits) << 24 | node id; 0 = empty
    uint64_t mask;
    std::atomic<uint64_t> used;
  };
  // A node's frame is its word's index in the frame dictionary (frame_dictionary.h), or, in a node
  // whose link says it names a chain, the chain's innermost node id: both below 2^24, so three bytes,
  // and a node is 8 bytes where the word itself made 16 (python3's imports: 175,000 nodes, 17,000
  // distinct words).
  static constexpr unsigned kCountLowBits = 8;
  struct Node {
    std::atomic<uint32_t> link;        // parent id << 8 | names a chain << 7 | level << 1 | 1; 0 until published
    uint8_t frame[3];                  // little-endian; written before `link` is published
    std::atomic<uint8_t> allocations;  // low kCountLowBits bits (count_allocation)
  };
  static_assert(sizeof(Node) == 8, "a node, its frame's index and its count");
  static_assert(FrameDictionary::kMaxIndices <= (1u << 24) && kMaxStacks <= (1u << 24),
                "a word's index and a chain's node id fit a node's three frame bytes");
  static uint32_t frame_ref(const Node& node) {
    return uint32_t{node.frame[0]} | uint32_t{node.frame[1]} << 8 | uint32_t{node.frame[2]} << 16;
  }
  static void set_frame_ref(Node& node, uint32_t ref) {
    node.frame[0] = static_cast<uint8_t>(ref);
    node.frame[1] = static_cast<uint8_t>(ref >> 8);
    node.frame[2] = static_cast<uint8_t>(ref >> 16);
  }
  // The word node `node`, whose link is `link`, stands for.
  uintptr_t node_frame(const Node& node, uint32_t link) const;
  static_assert(kLevels <= 64, "a level fits in the link's six bits below the chain bit");

  // A word standing for a chain (see "Chains" above): kChainTag | the chain's innermost node, in a
  // node whose link has the chain bit (the bit, not the value, tells it from a captured frame; the
  // tag keeps its key apart from a native frame's of the chain's id).
  static constexpr uintptr_t kChainTag = uintptr_t{1} << 62;
  // How many of these frames (innermost first) come before the first Python frame's word or
  // return address into the interpreter's loop (set_chain_boundary): `depth` if none does.
  uint32_t chain_length(const uintptr_t* frames, uint32_t depth) const {
    const uintptr_t low = boundary_low_.load(std::memory_order_acquire);
    const uintptr_t high = boundary_high_.load(std::memory_order_relaxed);
    uint32_t inner = 0;
    while (inner < depth && !python_word::is_python(frames[inner]) &&
           !(low != 0 && frames[inner] - 1 >= low && frames[inner] - 1 < high))
      ++inner;
    return inner;
  }
  // The node of exactly these frames (innermost first), found or made; kNoStack when the table is full.
  // `chained`: frames[0] is a chain's word.
  uint32_t intern_path(const uintptr_t* frames, uint32_t depth, bool chained, uint32_t generation);
  // The stack of these frames whose innermost `inner` frames make a chain.
  uint32_t intern_chained(const uintptr_t* frames, uint32_t depth, uint32_t inner, uint32_t generation);
  // Appends node `id`'s frames to `view`, expanding a chain's word when `chains` (a chain holds
  // none); false when a node on the way is not published yet.
  bool append_path(uint32_t id, uint32_t made, bool chains, StackView& view) const;
  Level* level(unsigned index) const { return levels_[index].load(std::memory_order_acquire); }
  Level* grow(unsigned after);
  // The child of `parent` (whose children sit at `from_level` or newer) for `frame` (a chain's word
  // when `chain_word`) as captured in `generation`, made if new; its level in `child_level`.
  // kNoStack when the table is full. `fresh` says whether `parent` was just made (its children are
  // then not looked for), and on return whether the child was.
  uint32_t child(uint32_t parent, unsigned from_level, uintptr_t frame, bool chain_word, uint64_t key,
                 uint32_t generation, bool& fresh, unsigned& child_level);
  // The innermost node of a known stack whose innermost node's key is `key`, valid in `generation`;
  // kNoStack if there is none. `chained`: frames[0] is a chain's word.
  uint32_t find(const uintptr_t* frames, uint32_t depth, bool chained, uint64_t key, uint32_t generation);
  // Whether node `id` is the innermost node of exactly these frames (frames[0] a chain's word when
  // `chained`), each node valid in `generation`.
  bool is_path(uint32_t id, const uintptr_t* frames, uint32_t depth, bool chained, uint32_t generation);
  // Whether node `id` (whose frame is `frame`) may stand for a capture in `generation`; moves its
  // generation forward when it may.
  bool same_code(uint32_t id, uintptr_t frame, uint32_t generation);
  bool stands_for_unloaded_code(uint32_t slot, uint32_t tag, uintptr_t frame, uint32_t generation) const;
  // The module generation node `id` was captured in (or moved forward to). Read after the node's
  // link (acquire): a node published with a generation other than 0 set `generations_written_`
  // before its link, so the flag read afterwards is set. Before the first dlclose every generation
  // is 0 and the array is never read: its pages stay unmapped (its reads would map the zero page).
  uint32_t generation_of(uint32_t id) const {
    if (!generations_written_.load(std::memory_order_acquire)) return 0;
    return generations_[id].load(std::memory_order_relaxed);
  }
  // Records generation `generation` for a node made now (ids are never reused: its entry is 0),
  // before its link is published.
  void set_generation(uint32_t id, uint32_t generation) {
    if (generation == 0) return;
    generations_written_.store(true, std::memory_order_release);
    generations_[id].store(generation, std::memory_order_relaxed);
  }

  std::atomic<Level*> levels_[kLevels] = {};
  std::atomic<unsigned> newest_{0};
  std::atomic<uint32_t> next_id_{1};
  std::atomic<uint32_t> stacks_{0};
  Node* nodes_ = nullptr;
  FrameDictionary frames_;
  // id -> module generation, in an array of its own: 0 (no library unloaded yet) in most programs
  // always, and then never written, where it cost 4 resident bytes a node inside the node.
  std::atomic<uint32_t>* generations_ = nullptr;
  std::atomic<bool> generations_written_{false};
  std::atomic<uint64_t>* allocation_wraps_ = nullptr;  // id -> allocations >> kCountLowBits
  std::atomic<uint64_t>* handed_out_ = nullptr;        // id -> bit: returned by intern() as a stack
  uint32_t max_nodes_ = kMaxStacks;
  std::atomic<uintptr_t> boundary_low_{0}, boundary_high_{0};
};

StackTable& stack_table();

}  // namespace heapkeeper::alloc
