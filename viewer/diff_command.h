// `heapkeeper diff A B [--json]`: what changed between two reports (files, or pids whose report is
// taken now): per allocation site, live bytes and blocks before and after, sites new and gone;
// leaks new, fixed and remaining. Sites and leaks are matched by their stacks, named so that two
// runs of one build match (function and source line, or module and offset: never addresses,
// which ASLR moves).
#pragma once

#include <string>

namespace heapkeeper::view {

int diff_reports(const std::string& before, const std::string& after, bool json, size_t sites_shown);

}  // namespace heapkeeper::view
