// Implementation of the lock-free stack tree (see stack_table.h).
#include "allocator/stack_table.h"

#include "allocator/config.h"
#include "allocator/internal_mappings.h"
#include "allocator/unloaded_modules.h"

#include <sys/mman.h>

namespace heapkeeper::alloc {
namespace {

static_assert(Config::kMaxStackDepth <= static_cast<int>(StackView::kMaxDepth), "a view holds every captured frame");

StackTable g_stack_table;

void* map_anonymous(size_t bytes) { return map_internal(bytes, true); }

// A node's hash is that of its whole path, outermost frame first, so a stack's are computed in one
// pass over its frames.
constexpr uint64_t kPathSeed = 0x2545f4914f6cdd1dull;
inline uint64_t path_step(uint64_t h, uintptr_t frame) {
  h ^= frame;
  h *= 0xff51afd7ed558ccdull;
  return h ^ (h >> 32);
}
inline uint64_t path_key(uint64_t h) {
  h *= 0xc4ceb9fe1a85ec53ull;
  return h ^ (h >> 29);
}

constexpr unsigned kIdBits = 24;
constexpr uint32_t kIdMask = (1u << kIdBits) - 1;
static_assert(StackTable::kMaxStacks - 1 <= kIdMask, "a slot holds a node id");
inline uint32_t slot_tag(uint64_t key) { return static_cast<uint32_t>(key >> 56); }
inline uint32_t link_parent(uint32_t link) { return link >> 8; }
inline unsigned link_level(uint32_t link) { return (link >> 1) & 0x3f; }
// Set in the link of a node whose frame is a chain's word. The word alone cannot say so: an unwinder
// stepping by a frame pointer through code without unwind information returns whatever the frame
// record holds, and a double of 2.0 or more has the word's bits 63..62 (01).
constexpr uint32_t kNamesChain = 1u << 7;
inline bool names_chain(uint32_t link) { return (link & kNamesChain) != 0; }

}  // namespace

StackTable& stack_table() { return g_stack_table; }

bool StackTable::initialize(uint64_t address_space_left) {
  max_nodes_ = kMaxStacks;
  if (address_space_left != 0) {
    // 1/256 of what is left for nodes and their counters (1 GiB: some 170,000 nodes).
    const uint64_t nodes =
        address_space_left / 256 / (sizeof(Node) + sizeof(uint32_t) + sizeof(uint64_t) + sizeof(uintptr_t));
    if (nodes < max_nodes_) max_nodes_ = nodes < 4096 ? 4096 : static_cast<uint32_t>(nodes);
  }
  nodes_ = static_cast<Node*>(map_anonymous(sizeof(Node) * max_nodes_));
  generations_ = static_cast<std::atomic<uint32_t>*>(map_anonymous(sizeof(uint32_t) * max_nodes_));
  allocation_wraps_ = static_cast<std::atomic<uint64_t>*>(map_anonymous(sizeof(uint64_t) * max_nodes_));
  handed_out_ = static_cast<std::atomic<uint64_t>*>(map_anonymous(sizeof(uint64_t) * (max_nodes_ / 64 + 1)));
  if (nodes_ == nullptr || generations_ == nullptr || allocation_wraps_ == nullptr || handed_out_ == nullptr ||
      !frames_.initialize(max_nodes_))
    return false;
  auto* first = static_cast<Level*>(map_anonymous(sizeof(Level)));
  if (first == nullptr) return false;
  first->slots = static_cast<std::atomic<uint32_t>*>(map_anonymous(sizeof(uint32_t) << level_shift(0)));
  if (first->slots == nullptr) return false;
  first->mask = (uint64_t{1} << level_shift(0)) - 1;
  levels_[0].store(first, std::memory_order_release);
  return true;
}

uintptr_t StackTable::node_frame(const Node& node, uint32_t link) const {
  return names_chain(link) ? kChainTag | frame_ref(node) : frames_.frame(frame_ref(node));
}

uint64_t StackTable::hash(const uintptr_t* frames, uint32_t depth) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ depth;
  for (uint32_t i = 0; i < depth; ++i) {
    h ^= frames[i];
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 29;
  return h;
}

StackView StackTable::frames(uint32_t id) const {
  StackView view;
  const uint32_t made = next_id_.load(std::memory_order_acquire);
  if (id == kNoStack || id >= made || id >= max_nodes_) return view;
  if (!append_path(id, made, true, view)) return StackView();
  view.generation = generation_of(id);  // after its link: see generation_of
  return view;
}

bool StackTable::append_path(uint32_t id, uint32_t made, bool chains, StackView& view) const {
  for (uint32_t at = id; at != kNoStack && view.depth < StackView::kMaxDepth;) {
    if (at >= made || at >= max_nodes_) return false;
    const uint32_t link = nodes_[at].link.load(std::memory_order_acquire);
    if (link == 0) return false;  // not published yet
    if (names_chain(link)) {
      // A chain is written before the stack naming it; it never names another.
      const uint32_t chain = frame_ref(nodes_[at]);
      if (!chains || chain >= made || !append_path(chain, made, false, view)) return false;
    } else {
      view.frames[view.depth++] = frames_.frame(frame_ref(nodes_[at]));
    }
    at = link_parent(link);
  }
  return true;
}

uint64_t StackTable::site_key(uint32_t id) const {
  const StackView view = frames(id);
  if (view.depth == 0) return 0;
  // Frames in an unloaded module are told apart by its record, not by when it was unloaded: a
  // plugin reloaded in a loop is one site, not one per reload. 0 for a stack whose modules are all
  // still mapped: the key is then the plain hash.
  return hash(view.frames, view.depth) ^ unloaded_identity(view.frames, view.depth, view.generation);
}

namespace {

// Whether `frame` may name other code in generation `a` than in `b` (its module was unloaded
// between them, in either order).
bool code_changed(uintptr_t frame, uint32_t a, uint32_t b) {
  return a != b && unloaded_between(&frame, 1, a < b ? a : b, a < b ? b : a);
}

}  // namespace

bool StackTable::same_code(uint32_t id, uintptr_t frame, uint32_t generation) {
  uint32_t seen = generation_of(id);
  if (seen == generation) return true;
  if (code_changed(frame, seen, generation)) return false;
  // The same code in both generations: keep the newer, so later checks look at fewer unloads.
  if (seen < generation) generations_written_.store(true, std::memory_order_release);
  std::atomic<uint32_t>& recorded = generations_[id];
  while (seen < generation && !recorded.compare_exchange_weak(seen, generation, std::memory_order_relaxed)) {
  }
  return true;
}

// Whether `slot` holds a node for `frame` (under the slot's tag) whose generation and `generation`
// have an unload of the frame's module between them: it can stand for this capture's code in
// neither direction. Reads only: same_code would move a generation forward.
bool StackTable::stands_for_unloaded_code(uint32_t slot, uint32_t tag, uintptr_t frame, uint32_t generation) const {
  if ((slot >> kIdBits) != tag) return false;
  const Node& node = nodes_[slot & kIdMask];
  if (node_frame(node, node.link.load(std::memory_order_acquire)) != frame) return false;
  return code_changed(frame, generation_of(slot & kIdMask), generation);
}

uint64_t StackTable::indexed_nodes() const {
  uint64_t used = 0;
  for (unsigned l = 0; l < kLevels; ++l) {
    if (const Level* lv = level(l)) used += lv->used.load(std::memory_order_relaxed);
  }
  return used;
}

StackTable::Level* StackTable::grow(unsigned after) {
  if (after + 1 >= kLevels) return nullptr;
  Level* existing = level(after + 1);
  if (existing != nullptr) return existing;
  auto* fresh = static_cast<Level*>(map_anonymous(sizeof(Level)));
  if (fresh == nullptr) return nullptr;
  const unsigned shift = level_shift(after + 1);
  fresh->slots = static_cast<std::atomic<uint32_t>*>(map_anonymous(sizeof(uint32_t) << shift));
  if (fresh->slots == nullptr) {
    unmap_internal(fresh, sizeof(Level));
    return nullptr;
  }
  fresh->mask = (uint64_t{1} << shift) - 1;
  Level* expected = nullptr;
  if (!levels_[after + 1].compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) {
    unmap_internal(fresh->slots, sizeof(uint32_t) << shift);
    unmap_internal(fresh, sizeof(Level));
    return expected;
  }
  unsigned newest = after;
  newest_.compare_exchange_strong(newest, after + 1, std::memory_order_acq_rel);
  return fresh;
}

uint32_t StackTable::child(uint32_t parent, unsigned from_level, uintptr_t frame, bool chain_word, uint64_t key,
                           uint32_t generation, bool& fresh, unsigned& child_level) {
  const uint32_t tag = slot_tag(key);
  const unsigned newest = newest_.load(std::memory_order_acquire);
  const auto matches = [&](uint32_t slot, uint32_t& link) {
    if ((slot >> kIdBits) != tag) return false;
    const Node& node = nodes_[slot & kIdMask];
    link = node.link.load(std::memory_order_acquire);
    return link_parent(link) == parent && names_chain(link) == chain_word && node_frame(node, link) == frame;
  };
  // The slot of a node for this frame under this parent that stands for other code (a library
  // since unloaded): the new node takes its place, so that a plugin loaded and closed in a loop
  // does not lengthen the probe chain by one node per cycle. The old id stays valid for the stacks
  // through it.
  std::atomic<uint32_t>* replaced_slot = nullptr;
  uint32_t replaced_value = 0;
  unsigned replaced_level = 0;
  // Existing nodes first (none under a node this walk just made, but for a race, which may then
  // make a node twice; under such a parent only a slot to take over is looked for): a child is
  // never inserted below its parent's level; the oldest level first, since a child is most often
  // made just after its parent.
  const bool parent_fresh = fresh;
  // Under a parent just made there is nothing to find but such a slot, and before the first unload
  // (generation 0: most programs, always) no node stands for unloaded code: nothing to look for.
  // (A capture that read generation 0 just before another thread's dlclose may then miss a slot
  // it could have taken: its node only goes to a free slot, as when there is none.)
  const bool look = !(parent_fresh && generation == 0);
  for (unsigned l = from_level; look && l <= newest && !(parent_fresh && replaced_slot != nullptr); ++l) {
    Level* lv = level(l);
    if (lv == nullptr) continue;
    for (uint64_t i = key & lv->mask, probes = 0; probes <= lv->mask && !(parent_fresh && replaced_slot != nullptr);
         i = (i + 1) & lv->mask, ++probes) {
      const uint32_t slot = lv->slots[i].load(std::memory_order_acquire);
      if (slot == 0) break;
      uint32_t link = 0;
      if (parent_fresh || !matches(slot, link)) {
        // The node for this frame on this path under an earlier copy of its caller, standing for
        // code since unloaded (the caller is a new node of a reloaded plugin, so no parent matches
        // below the plugin's outermost frame): its slot is taken too, or every frame of the plugin
        // but the first would lengthen its probe chain by one node per reload.
        if (replaced_slot == nullptr && stands_for_unloaded_code(slot, tag, frame, generation)) {
          replaced_slot = &lv->slots[i];
          replaced_value = slot;
          replaced_level = l;
        }
        continue;
      }
      if (same_code(slot & kIdMask, frame, generation)) {
        child_level = link_level(link);
        return slot & kIdMask;
      }
      if (replaced_slot == nullptr) {
        replaced_slot = &lv->slots[i];
        replaced_value = slot;
        replaced_level = l;
      }
    }
  }

  // A new node: written, then published by its link, then made findable. Its frame's index first:
  // a full dictionary spends no node id.
  const uint32_t ref = chain_word ? static_cast<uint32_t>(frame & (kChainTag - 1)) : frames_.intern(frame);
  if (!chain_word && ref == FrameDictionary::kNoIndex) return kNoStack;
  fresh = true;
  const uint32_t id = next_id_.fetch_add(1, std::memory_order_acq_rel);
  if (id >= max_nodes_) return kNoStack;
  unsigned l = newest > from_level ? newest : from_level;
  Level* lv = level(l);
  // A level takes nodes until three quarters full. Every older level stays, so the slots come to
  // between 1.3 and 2.7 per node (between 2 and 4 when levels were closed half full: 4 MiB of the
  // stack table's 10 on python3's churn with 300,000 nodes, where this takes 2). Linear probing's
  // longer runs at three quarters (8.5 slots for a key not there, against 2.5) mostly stay within
  // the one or two cache lines of 4-byte slots a probe reads anyway.
  while (lv == nullptr || lv->used.load(std::memory_order_relaxed) * 4 > (lv->mask + 1) * 3) {
    Level* next = grow(l);
    if (next == nullptr) break;
    lv = next;
    ++l;
  }
  if (lv == nullptr) return kNoStack;  // levels up to from_level are always there: unreachable
  // The level recorded is where the node's slot is, or lower (a node that does not get the replaced
  // slot goes to `l`): its children are looked for from there upwards.
  const unsigned recorded = replaced_slot != nullptr && replaced_level < l ? replaced_level : l;
  Node& node = nodes_[id];
  set_frame_ref(node, ref);
  set_generation(id, generation);
  node.link.store((parent << 8) | (chain_word ? kNamesChain : 0) | (recorded << 1) | 1, std::memory_order_release);
  const uint32_t wanted = (tag << kIdBits) | id;
  child_level = recorded;
  if (replaced_slot != nullptr &&
      replaced_slot->compare_exchange_strong(replaced_value, wanted, std::memory_order_acq_rel)) {
    return id;
  }
  for (uint64_t i = key & lv->mask, probes = 0; probes <= lv->mask; i = (i + 1) & lv->mask, ++probes) {
    uint32_t expected = 0;
    if (lv->slots[i].compare_exchange_strong(expected, wanted, std::memory_order_acq_rel)) {
      lv->used.fetch_add(1, std::memory_order_relaxed);
      return id;
    }
    uint32_t link = 0;
    if (matches(expected, link) && same_code(expected & kIdMask, frame, generation)) {
      fresh = false;
      child_level = link_level(link);
      return expected & kIdMask;  // another thread won the race; our node stays unused
    }
  }
  return id;  // table full: the node is still valid for frames(), just not findable by lookup
}

bool StackTable::is_path(uint32_t id, const uintptr_t* frames, uint32_t depth, bool chained, uint32_t generation) {
  bool same_generation = true;
  uint32_t at = id;
  for (uint32_t i = 0; i < depth; ++i) {
    if (at == kNoStack) return false;
    const Node& node = nodes_[at];
    const uint32_t link = node.link.load(std::memory_order_acquire);
    if (link == 0 || names_chain(link) != (chained && i == 0) || node_frame(node, link) != frames[i]) return false;
    same_generation &= generation_of(at) == generation;
    at = link_parent(link);
  }
  if (at != kNoStack) return false;  // a longer stack's node
  if (same_generation) return true;
  // From the outermost node inwards, as a walk from the root checks them: a node's generation moves
  // forward only once its callers' have passed (else a node valid in both generations under a caller
  // that is not would be moved, and the old stack through it named in the new generation). Each
  // node is reached again from the innermost: quadratic in the depth, but only after a dlclose, and
  // no array of node ids on the allocating thread's stack.
  for (uint32_t i = depth; i-- > 0;) {
    at = id;
    for (uint32_t k = 0; k < i; ++k) at = link_parent(nodes_[at].link.load(std::memory_order_acquire));
    if (!same_code(at, frames[i], generation)) return false;
  }
  return true;
}

uint32_t StackTable::find(const uintptr_t* frames, uint32_t depth, bool chained, uint64_t key, uint32_t generation) {
  const uint32_t tag = slot_tag(key);
  const unsigned newest = newest_.load(std::memory_order_acquire);
  // One cache miss per level, and the levels are independent: start them all at once.
  for (unsigned l = 0; l <= newest; ++l) {
    if (Level* lv = level(l)) __builtin_prefetch(&lv->slots[key & lv->mask]);
  }
  for (unsigned l = newest + 1; l-- > 0;) {
    Level* lv = level(l);
    if (lv == nullptr) continue;
    for (uint64_t i = key & lv->mask, probes = 0; probes <= lv->mask; i = (i + 1) & lv->mask, ++probes) {
      const uint32_t slot = lv->slots[i].load(std::memory_order_acquire);
      if (slot == 0) break;
      if ((slot >> kIdBits) == tag && is_path(slot & kIdMask, frames, depth, chained, generation))
        return slot & kIdMask;
    }
  }
  return kNoStack;
}

uint32_t StackTable::intern(const uintptr_t* frames, uint32_t depth, uint32_t generation, bool* made) {
  if (made != nullptr) *made = false;
  if (depth == 0 || nodes_ == nullptr) return kNoStack;
  if (depth > StackView::kMaxDepth) depth = StackView::kMaxDepth;
  // The native frames inside the innermost Python frame or interpreter loop (the C calls from the
  // eval loop down to malloc) are stored once, as a chain of their own, and the stack as its outer
  // frames with a word naming that chain as its innermost frame: see "Chains" in stack_table.h.
  const uint32_t inner = chain_length(frames, depth);
  const uint32_t id = inner >= 2 && inner < depth ? intern_chained(frames, depth, inner, generation)
                                                  : intern_path(frames, depth, false, generation);
  if (id == kNoStack) return kNoStack;
  // The first time this node is handed out as a stack: one more distinct stack.
  std::atomic<uint64_t>& word = handed_out_[id / 64];
  const uint64_t bit = uint64_t{1} << (id % 64);
  if ((word.load(std::memory_order_relaxed) & bit) == 0 && (word.fetch_or(bit, std::memory_order_relaxed) & bit) == 0) {
    stacks_.fetch_add(1, std::memory_order_relaxed);
    if (made != nullptr) *made = true;
  }
  return id;
}

// Out of line: a native stack's interning, on a thread's alternate signal stack perhaps (a handler
// that allocates), does not reserve the copy's kilobyte.
__attribute__((noinline)) uint32_t StackTable::intern_chained(const uintptr_t* frames, uint32_t depth, uint32_t inner,
                                                              uint32_t generation) {
  const uint32_t chain = intern_path(frames, inner, false, generation);
  if (chain == kNoStack) return kNoStack;
  uintptr_t outer[StackView::kMaxDepth];
  outer[0] = kChainTag | chain;
  for (uint32_t i = inner; i < depth; ++i) outer[i - inner + 1] = frames[i];
  return intern_path(outer, depth - inner + 1, true, generation);
}

uint32_t StackTable::intern_path(const uintptr_t* frames, uint32_t depth, bool chained, uint32_t generation) {
  // Each node's key is that of its path: paths[i] is the path of frames[depth - 1] down to
  // frames[i], so the innermost node's key is that of paths[0], its caller's that of paths[1].
  uint64_t paths[StackView::kMaxDepth];
  uint64_t path = kPathSeed;
  for (uint32_t i = depth; i-- > 0;) {
    path = path_step(path, frames[i]);
    paths[i] = path;
  }
  // A known stack (the usual case: the callers' caches miss far more often than stacks are new) is
  // found by its key and checked by walking its parents: one probe per level and `depth` nodes,
  // where a walk from the outermost frame would look up every node.
  uint32_t id = find(frames, depth, chained, path_key(paths[0]), generation);
  if (id != kNoStack) return id;
  // A new stack most often differs from known ones only in its innermost frames: a new call site
  // under known callers (in a Python program, a new instruction of the innermost Python frame).
  // Its innermost known node is looked for the same way, a few frames out, and only the frames
  // inside it are placed; else every frame is, from the outermost inwards. (A lookup that finds
  // nothing costs a probe per level; each child placed from the root costs as much, and a Python
  // stack has thirty of them.)
  constexpr uint32_t kKnownCallerProbes = 8;
  uint32_t parent = kNoStack;
  uint32_t inside = 1;  // frames[0 .. inside) are not parent's
  for (; inside < depth && inside <= kKnownCallerProbes; ++inside) {
    parent = find(frames + inside, depth - inside, false, path_key(paths[inside]), generation);
    if (parent != kNoStack) break;
  }
  bool fresh = false;
  unsigned at_level = 0;
  if (parent != kNoStack) {
    at_level = link_level(nodes_[parent].link.load(std::memory_order_acquire));
  } else {
    inside = depth;  // from the root's children
  }
  id = parent;
  for (uint32_t i = inside; i-- > 0;) {
    id = child(id, at_level, frames[i], chained && i == 0, path_key(paths[i]), generation, fresh, at_level);
    if (id == kNoStack) return kNoStack;
  }
  return id;
}

}  // namespace heapkeeper::alloc
