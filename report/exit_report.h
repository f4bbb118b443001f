// The JSON report (HEAPKEEPER_REPORT=FILE.json, `heapkeeper run --report`), and the report layer's
// connection to the engine: the symbolizing stack printer used for bad-free reports.
//
// The document is versioned ("schema_version") and flat at the top so later layers can add keys
// (the collector adds leaks and scan figures) without breaking readers.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace heapkeeper::report {

class Symbolizer;

// The process-wide symbolizer (created on first use, never destroyed). Guard held.
Symbolizer& shared_symbolizer();

// Layers above add their keys to the report (the collector adds "leaks" and "scan").
using ReportSection = void (*)(nlohmann::json& document);
void add_report_section(ReportSection section);

// Registers the exit handler and the stack printer with the engine. Guard held.
void install();

// The report as a JSON string (pretty-printed).
std::string build_report_json();

// Writes the report to `path` ('%p' expands to the pid) as report_file.h describes: a regular file
// is replaced atomically, a FIFO or device is written to; 0 on success, -1 with errno.
int write_report_file(const char* path);

}  // namespace heapkeeper::report
