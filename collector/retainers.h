// `heapkeeper why`: who holds a block, or the blocks of an allocation site. A scan records the
// reference graph; the shortest retainer paths from a root to the target are read from it, with
// the root described by where its word lies (reference_graph.h, RootRange) and what the target
// retains. Symbols are not resolved here: the answer holds addresses and stack ids.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "collector/reference_graph.h"

namespace heapkeeper::collect {

struct RetainerStep {
  uintptr_t address = 0;  // the block's user bytes
  uint64_t size = 0;
  uint32_t stack_id = 0;
};

struct RetainerPath {
  RootRange root;                   // what the root word lies in (kind kAnonymous with start 0: unknown)
  uintptr_t root_word = 0;          // where the pointer to the first block lies
  std::vector<RetainerStep> chain;  // from the block the root points at to the target
};

struct WhyTarget {
  uintptr_t address = 0;                        // a block's address (interior allowed), or
  std::function<bool(uint32_t stack_id)> site;  // the blocks whose stack matches
};

struct WhyAnswer {
  bool ok = false;
  std::string failure;
  uint64_t target_blocks = 0, target_bytes = 0;  // reachable blocks that are the target
  uint64_t retained_bytes = 0;                   // what freeing them all would make unreachable
  bool target_unreachable = false;               // an address target that is leaked (nothing holds it)
  std::string stop_method;
  std::vector<RetainerPath> paths;  // shortest first
};

// Scans now (the world is stopped once) and answers. Guard held, as for scan_now.
WhyAnswer why_now(const WhyTarget& target, size_t path_limit);

}  // namespace heapkeeper::collect
