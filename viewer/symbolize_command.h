// `heapkeeper symbolize`: turns a raw dump (report/raw_dump.h) into the reports a user reads. The
// library runs `heapkeeper symbolize --answer` at exit when no `heapkeeper run` service is there
// (report/analysis_handoff.h); a person can run it on a dump file to get its JSON report.
#pragma once

#include <string>

namespace heapkeeper::view {

// `answer`: dump on stdin, the library's answer on stdout, then (with `serve`, a socket path) a
// user's symbolizer service there if none answers yet (analysis/symbolizer_service.h). Otherwise
// the JSON report (or, with `text`, the leak text) of the dump in `path` ("-" or empty: stdin).
// 0, or 1 with one line.
int symbolize_dump(const std::string& path, bool answer, bool text, const std::string& serve = {});

}  // namespace heapkeeper::view
