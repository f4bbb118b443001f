// HEAPKEEPER_BASELINE: the leaks a project already knows, as a JSON report of an earlier run
// (HEAPKEEPER_REPORT, `heapkeeper report --json`). A leak whose allocation stack names the same
// functions, frame by frame, as a leak of the baseline is "known": it is still reported, marked as
// such, but does not fire HEAPKEEPER_EXITCODE — a CI gate that fails only on new leaks.
//
// Matching is by function names (a frame without one: its module's file name), not by source
// lines or offsets, so a baseline survives edits and rebuilds that move code around the leak.
#pragma once

#include <string>
#include <unordered_set>
#include <vector>

#include "analysis/module_symbolizer.h"

namespace heapkeeper::analysis {

class LeakBaseline {
 public:
  // Reads the baseline report at `path`: true, or false with `error` one line (unreadable, not
  // JSON, not a heapkeeper report).
  bool load(const std::string& path, std::string& error);
  bool knows(const std::vector<SymbolizedFrame>& stack) const;
  size_t size() const { return keys_.size(); }

  // The matching key of a stack (exposed for tests).
  static std::string key_of(const std::vector<SymbolizedFrame>& stack);

 private:
  std::unordered_set<std::string> keys_;
};

}  // namespace heapkeeper::analysis
