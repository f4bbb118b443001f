// Implementation of LeakSanitizer-style suppressions (see suppressions.h).
#include "collector/suppressions.h"

#include <utility>

#include "report/read_file.h"

namespace heapkeeper::collect {
namespace {

// Glob match of `pattern` ('*' only) against the whole of `text`.
bool glob_match(std::string_view pattern, std::string_view text) {
  size_t p = 0, t = 0, star = std::string_view::npos, resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

}  // namespace

bool Suppressions::pattern_matches(std::string_view pattern, std::string_view text) {
  if (pattern.empty()) return false;
  std::string glob;
  if (pattern.front() == '^')
    pattern.remove_prefix(1);
  else
    glob += '*';
  bool anchored_end = !pattern.empty() && pattern.back() == '$';
  if (anchored_end) pattern.remove_suffix(1);
  glob += pattern;
  if (!anchored_end) glob += '*';
  return glob_match(glob, text);
}

namespace {

// The suppression types of the other sanitizers (compiler-rt's sanitizer_common, ThreadSanitizer,
// UndefinedBehaviorSanitizer, AddressSanitizer), which a shared file may hold.
bool is_other_sanitizer_type(std::string_view type) {
  static constexpr std::string_view kTypes[] = {"race",
                                                "race_top",
                                                "mutex",
                                                "thread",
                                                "signal",
                                                "called_from_lib",
                                                "deadlock",
                                                "interceptor_name",
                                                "interceptor_via_fun",
                                                "interceptor_via_lib",
                                                "odr_violation",
                                                "alloc_dealloc_mismatch",
                                                "vptr_check",
                                                "init-order",
                                                "src",
                                                "fun",
                                                "type",
                                                "global",
                                                "alignment",
                                                "bool",
                                                "bounds",
                                                "enum",
                                                "float-cast-overflow",
                                                "function",
                                                "implicit-integer-sign-change",
                                                "implicit-signed-integer-truncation",
                                                "implicit-unsigned-integer-truncation",
                                                "integer-divide-by-zero",
                                                "invalid-builtin-use",
                                                "nonnull-attribute",
                                                "null",
                                                "nullability-arg",
                                                "nullability-assign",
                                                "nullability-return",
                                                "object-size",
                                                "pointer-overflow",
                                                "return",
                                                "returns-nonnull-attribute",
                                                "shift",
                                                "shift-base",
                                                "shift-exponent",
                                                "signed-integer-overflow",
                                                "unreachable",
                                                "unsigned-integer-overflow",
                                                "unsigned-shift-base",
                                                "vla-bound",
                                                "vptr"};
  for (const std::string_view known : kTypes)
    if (type == known) return true;
  return false;
}

}  // namespace

bool Suppressions::load(const std::string& path, std::string& error) {
  std::string whole;
  const std::string problem = report::read_regular_file(path.c_str(), kMaxFileBytes, whole);
  if (!problem.empty()) {
    error = "cannot read suppressions file " + path + ": " + problem;
    return false;
  }
  // Line by line without iostreams: this runs inside the traced program. Nothing is kept from a
  // file that is refused: its warning says that no leaks are suppressed.
  std::vector<std::string> patterns;
  int number = 0;
  for (size_t start = 0; start < whole.size();) {
    size_t end = whole.find('\n', start);
    if (end == std::string::npos) end = whole.size();
    const std::string_view line(whole.data() + start, end - start);
    start = end + 1;
    ++number;
    // A NUL byte would make a pattern that matches no name (names are C strings), or a type that
    // is not "leak": the line would be silently lost. Text files hold none; refuse the file.
    if (line.find('\0') != std::string_view::npos) {
      error = path + ":" + std::to_string(number) + ": a NUL byte in the line (a suppressions file is text)";
      return false;
    }
    std::string_view text = trim(line);
    if (text.empty() || text.front() == '#') continue;
    size_t colon = text.find(':');
    if (colon == std::string_view::npos) {
      error = path + ":" + std::to_string(number) + ": expected TYPE:PATTERN, e.g. leak:my_function";
      return false;
    }
    const std::string_view type = trim(text.substr(0, colon));
    if (type != "leak") {
      // Another sanitizer's type (one file may serve several tools) does not apply; anything else
      // is a typo ("LEAK", "leaks") that would silently suppress nothing: refused, as
      // LeakSanitizer refuses it.
      if (is_other_sanitizer_type(type)) continue;
      error = path + ":" + std::to_string(number) + ": unknown suppression type \"" + std::string(type) +
              "\" (heapkeeper reads leak:PATTERN; other sanitizers' types are skipped)";
      return false;
    }
    std::string_view pattern = trim(text.substr(colon + 1));
    if (!pattern.empty()) patterns.emplace_back(pattern);
  }
  for (std::string& pattern : patterns) patterns_.push_back(std::move(pattern));
  return true;
}

const std::string* Suppressions::match(std::string_view text) const {
  for (const std::string& pattern : patterns_) {
    if (pattern_matches(pattern, text)) return &pattern;
  }
  return nullptr;
}

}  // namespace heapkeeper::collect
