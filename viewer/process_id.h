// A process id as the `heapkeeper` commands take it from their arguments and from serve's query
// strings: decimal digits only, a number above 0 (0 and negative numbers name process groups to
// kill()), as ps and /proc write it. Leading zeros are decimal ("00123" is pid 123). Every command
// that takes a pid refuses any other text in the same words (process_id_refusal), so that no
// command names another process than the one typed, or refuses in words of its own.
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <cstdlib>
#include <limits>
#include <string>

namespace heapkeeper::view {

// Whether `text` is meant as a pid rather than a file name, where an argument may be either
// (export, flamegraph, diff: PID|REPORT.json): digits only, and short enough to be one.
inline bool names_a_process(const std::string& text) {
  return !text.empty() && text.size() < 10 && text.find_first_not_of("0123456789") == std::string::npos;
}

// The pid `text` names, or 0 when it names none.
inline pid_t parse_process_id(const std::string& text) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) return 0;
  errno = 0;
  const long value = std::strtol(text.c_str(), nullptr, 10);
  if (errno != 0 || value <= 0 || value > std::numeric_limits<pid_t>::max()) return 0;
  return static_cast<pid_t>(value);
}

// The one line (without "heapkeeper: ") that refuses `text` as a pid.
inline std::string process_id_refusal(const std::string& text) {
  return "\"" + text + "\" is not a process id (a number above 0)";
}

}  // namespace heapkeeper::view
