// `heapkeeper run [options] -- PROG ARGS...`: starts a program under libheapkeeper.so.
#pragma once

#include <string>
#include <vector>

namespace heapkeeper::view {

struct RunOptions {
  std::string report_path;  // --report, HEAPKEEPER_REPORT
  std::string stack_depth;  // --stack-depth
  // --python-objects: PYTHONMALLOC=malloc, so that every Python object is a block of its own (with
  // its Python stack) rather than a slot in a pymalloc arena heapkeeper cannot see into.
  bool python_objects = false;
  std::string mode;           // --mode
  std::string scan_interval;  // --scan-interval
  std::string on_bad_free;    // --on-bad-free
  std::string suppressions;   // --suppressions
  std::string exit_code;      // --exitcode
  std::string library;        // --library (default: ../lib/libheapkeeper.so next to this binary)
  bool quiet = false;
  std::vector<std::string> command;
};

// Finds libheapkeeper.so: HEAPKEEPER_LIBRARY, else ../lib/libheapkeeper.so beside the executable.
std::string locate_preload_library();

// Sets up the environment and execs the program; returns only on failure, with the exit status
// to use (127 when the program cannot be found, 126 when it cannot be run), as shells do.
int run_program(const RunOptions& options);

}  // namespace heapkeeper::view
