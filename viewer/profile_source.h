// Where `heapkeeper export --format pprof|collapsed` and `heapkeeper flamegraph` get a heap profile
// (analysis/heap_profile.h): a running process, asked through its segment for a fresh report made
// for a profile (its raw dump: up to report::kProfileLiveSites live sites split by allocating
// thread, every module's range and load bias), or a JSON report file (HEAPKEEPER_REPORT, `report --json`), which lists
// the 20 largest sites — the rest becomes one "[other allocation sites]" frame — and whose modules are known from their
// frames (load bias = address - offset).
#pragma once

#include <string>

#include "analysis/heap_profile.h"

namespace heapkeeper::view {

// Why a profile could not be had, for callers that answer differently (serve_command.h: 404, 409,
// 503): the pid is not a tracked process of ours; it is stopped; it did not answer (busy with
// another heapkeeper, a failed scan, a timeout); the file is unreadable or not a report.
enum class ProfileFailure { kNone, kNoProcess, kStopped, kNoAnswer, kBadFile };

// SOURCE is a pid (all digits) or a report file. "" with `profile` set, or the problem in one line
// ("r.json: not a heapkeeper report: ...", "no tracked process 123 ...") and, if `failure` is
// given, its kind.
std::string load_profile(const std::string& source, analysis::HeapProfile& profile, ProfileFailure* failure = nullptr);

}  // namespace heapkeeper::view
