// A heapkeeper JSON report read for people (`heapkeeper show FILE`, `heapkeeper report PID`): read
// with bounded work, parsed, and checked against the schema before anything is printed, so that a
// bad file gets one line naming its problem, never a library's exception text or half a report.
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

namespace heapkeeper::view {

// More than any report heapkeeper writes (a few KiB to a few MiB: 20 live sites, one entry per
// leaking stack), and little enough to parse in seconds.
constexpr size_t kMaxReportBytes = size_t{64} << 20;

// Reads `path` whole into `text`: a regular file, or a stream (a FIFO, /dev/stdin, a pipe from
// `<(...)`: it waits for the writer, as cat would), never more than kMaxReportBytes. Returns ""
// or why not, to follow "PATH: " ("is a directory, not a report file", strerror's words).
std::string read_report_file(const std::string& path, std::string& text);

// Parses `text` and checks that every key `show` reads has its type. Returns "" with `document`
// set, or why the text is not a report ("not a heapkeeper report: leaks is not an array").
std::string parse_report(const std::string& text, nlohmann::json& document);

}  // namespace heapkeeper::view
