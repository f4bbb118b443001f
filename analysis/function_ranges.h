// Where a function's code lies in a running process, for `heapkeeper why PID FUNCTION`: the binary
// finds the function by name in the ELF symbol tables of the modules the process maps now (read
// from /proc/PID/maps with libdwfl, each at its load address), and sends the address ranges; the
// process matches its allocation stacks against them (report/raw_why.h). Names are compared as
// reports print them (analysis/module_symbolizer.h, readable_function_name), so any function name
// a report shows can be asked about.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace heapkeeper::analysis {

// [low, high) run-time address ranges of every function symbol named `name` in process `pid`
// (a static function may be defined in several files, or modules), sorted, without duplicates.
// Empty with `error` one line when the process's modules cannot be read; empty without error when
// no module defines the name.
std::vector<std::pair<uint64_t, uint64_t>> function_code_ranges(pid_t pid, const std::string& name, std::string& error);

}  // namespace heapkeeper::analysis
