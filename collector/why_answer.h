// The traced process's side of `heapkeeper why PID TARGET`: reads the request (report/raw_why.h),
// scans once with the reference graph recorded (retainers.h) and answers with raw facts —
// addresses, sizes, stack ids with their return addresses, roots with their addresses and thread
// ids, and the module map — which the `heapkeeper` binary names and renders
// (analysis/why_renderer.h). Nothing is symbolized here: the process never loads libdw for `why`.
#pragma once

#include <string>

namespace heapkeeper::collect {

// The answer to `argument` (a why request): a raw why answer (report/raw_why.h), or an
// {"error": ...} JSON line with `status` set to an errno-like code. Guard held, as for scan_now.
std::string build_why_answer(const std::string& argument, int& status);

}  // namespace heapkeeper::collect
