// `heapkeeper show REPORT.json`: a report file (HEAPKEEPER_REPORT) rendered for people.
#pragma once

#include <string>

namespace heapkeeper::view {

// Prints the report; returns the exit status (2 with a one-line error for a missing or invalid file).
int show_report(const std::string& path, size_t sites_shown, size_t frames_shown);

}  // namespace heapkeeper::view
