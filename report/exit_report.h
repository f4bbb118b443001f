// The report layer inside the traced process: gathering the raw dump (raw_dump.h) of what a report
// says, handing it to the `heapkeeper` binary to be symbolized and rendered (analysis_handoff.h),
// and putting the answer where the user asked: the leak report on stderr, the JSON report in
// HEAPKEEPER_REPORT. Nothing here reads DWARF or builds JSON.
//
// The JSON document is versioned ("schema_version") and flat at the top; the layers above add
// their facts to the dump (the collector adds the last scan).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "report/raw_dump.h"

namespace heapkeeper::report {

// Layers above add their facts to the dump (the collector adds its last scan).
using DumpSection = void (*)(RawReport& report);
void add_dump_section(DumpSection section);

// Registers the exit handler and the stack printer (bad-free reports, named by the binary too)
// with the engine. Guard held.
void install();

// The raw dump of this process now, asking the reader for `flags` (RawDumpFlags).
std::string build_raw_dump(uint32_t flags);

// Writes the report to `path` ('%p' expands to the pid) as report_file.h describes: a regular file
// is replaced atomically, a FIFO or device is written to; 0 on success, -1 with errno.
int write_report_file(const char* path);

// Which of `stack_ids` (allocation stacks of leak groups) the suppression `patterns` hide, asked of
// the binary (which knows function names): true with `suppressed` holding each hidden stack and
// the pattern that matched, or false with `why` one line. For the scans that run while the program
// does (the periodic scanner's lines and the live stats' leak table); the exit report's own
// answer carries the same verdicts.
bool find_suppressed_stacks(const std::vector<uint32_t>& stack_ids, const std::vector<std::string>& patterns,
                            std::vector<RawAnswer::Suppressed>& suppressed, std::string& why);

// What the exit report found, for HEAPKEEPER_EXITCODE: whether leaks remain once suppressions are
// applied (by the binary, which knows function names). Without an analysis every leak counts.
struct ExitVerdict {
  bool analysed = false;
  bool unsuppressed_leaks = false;
};
ExitVerdict exit_verdict();

}  // namespace heapkeeper::report
