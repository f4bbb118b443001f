// LeakSanitizer-compatible suppressions (HEAPKEEPER_SUPPRESSIONS=FILE).
//
// Each line "leak:PATTERN" suppresses the leaks whose allocation stack has a frame whose function,
// module or source file matches PATTERN: a substring match where '*' matches any run of
// characters, a leading '^' anchors at the start and a trailing '$' at the end. '#' starts a
// comment; other suppression types (LeakSanitizer shares the format with other sanitizers) are
// ignored with a warning.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace heapkeeper::collect {

class Suppressions {
 public:
  // Loads `path`, a regular file of at most kMaxFileBytes (read inside the program, so never
  // more: LeakSanitizer's own lists are a few KiB); on error returns false and sets `error` to a
  // one-line explanation.
  bool load(const std::string& path, std::string& error);
  static constexpr size_t kMaxFileBytes = size_t{4} << 20;
  void add(std::string pattern) { patterns_.push_back(std::move(pattern)); }
  // The first pattern matching any of the texts, or nullptr.
  const std::string* match(std::string_view text) const;
  bool empty() const { return patterns_.empty(); }
  size_t size() const { return patterns_.size(); }
  const std::vector<std::string>& patterns() const { return patterns_; }

  static bool pattern_matches(std::string_view pattern, std::string_view text);

 private:
  std::vector<std::string> patterns_;
};

}  // namespace heapkeeper::collect
