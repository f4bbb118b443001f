// `heapkeeper why`'s answer named: the raw facts a traced process sends (report/raw_why.h) become
// the JSON the issue specifies, symbolized in the binary with the exit report's symbolizer:
//   {"target": {"address" | "function", "blocks", "bytes", "retained_bytes"},
//    "paths": [{"root": {"kind", "name", "module", "offset", ...},
//               "chain": [{"address", "size", "site": {"function", "file", "line"}}]}]}
// Root kinds: "global" (name: the symbol, module: its file, offset: the word's offset in the module),
// "stack" (name: the thread, "thread" its id, "function": the function whose frame holds the
// pointer and module its file, offset: bytes above the thread's stack pointer), "register" (name:
// thread and register, offset: its index), "kernel", "bootstrap", "anonymous" (offset into the
// mapping). Strings are escaped as report/json_text.h says.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <string>

#include "analysis/module_symbolizer.h"
#include "report/raw_why.h"

namespace heapkeeper::analysis {

// `target` is what the user asked about: {"address": "0x..."} or {"function": NAME}; the figures
// are added to it. Thread names are read from /proc/PID/task (empty once a thread is gone).
nlohmann::json render_why_json(const report::RawWhy& why, nlohmann::json target, pid_t pid,
                               ModuleSymbolizer& symbolizer);

}  // namespace heapkeeper::analysis
