// `heapkeeper show REPORT.json`: a report file (HEAPKEEPER_REPORT) rendered for people.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace heapkeeper::view {

// Prints the report; returns the exit status (1 with one line naming the problem for a file that
// cannot be read or is not a report: report_document.h).
int show_report(const std::string& path, size_t sites_shown, size_t frames_shown);

// Prints a report that passed parse_report (report_document.h).
void show_report_document(const nlohmann::json& document, size_t sites_shown, size_t frames_shown);

}  // namespace heapkeeper::view
