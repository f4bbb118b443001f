// The JSON report (HEAPKEEPER_REPORT=FILE.json, `heapkeeper run --report`), and the report layer's
// connection to the engine: the symbolizing stack printer used for bad-free reports.
//
// The document is versioned ("schema_version") and flat at the top so later layers can add keys
// (the collector adds leaks and scan figures) without breaking readers.
#pragma once

#include <string>

namespace heapkeeper::report {

// Registers the exit handler and the stack printer with the engine. Guard held.
void install();

// The report as a JSON string (pretty-printed).
std::string build_report_json();

// Writes the report to `path` ('%p' expands to the pid) atomically; 0 on success, -1 with errno.
int write_report_file(const char* path);

}  // namespace heapkeeper::report
