// Turning a raw dump (report/raw_dump.h) into what the user reads: the JSON report (schema_version 1,
// the document HEAPKEEPER_REPORT and `heapkeeper report PID --json` have always given) and the
// LeakSanitizer-style leak text, with frames named by a ModuleSymbolizer and suppressions applied.
#pragma once

#include <string>

#include "analysis/module_symbolizer.h"
#include "report/raw_dump.h"

namespace heapkeeper::analysis {

// Answers a dump: the JSON when the dump asks for it (kWantJson), the leak text when it asks
// (kWantLeakText) and leaks remain once suppressions are applied, and whether they do; the gzipped
// pprof profile when it asks (kWantProfile).
report::RawAnswer render_answer(const report::RawReport& dump, ModuleSymbolizer& symbolizer);

// The JSON report of a dump, whatever it asks for.
std::string render_json(const report::RawReport& dump, ModuleSymbolizer& symbolizer);

}  // namespace heapkeeper::analysis
