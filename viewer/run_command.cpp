// Implementation of `heapkeeper run` (see run_command.h).
//
// The launcher only prepares the environment (LD_PRELOAD first, then HEAPKEEPER_* settings) and
// execs: the program keeps its pid, its exit status and its signals, and its own children inherit
// the environment, so they are tracked too, each as its own process.
#include "viewer/run_command.h"

#include <fmt/core.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace heapkeeper::view {
namespace {

bool valid_depth(const std::string& text) {
  if (text.empty() || text.size() > 3 || text.find_first_not_of("0123456789") != std::string::npos) return false;
  int value = std::stoi(text);
  return value >= 1 && value <= 128;
}

void set_checked(const char* variable, const char* option, const std::string& value, bool valid, const char* expected,
                 const char* fallback) {
  if (value.empty()) return;
  if (!valid) {
    fmt::print(stderr, "heapkeeper: invalid {} '{}' (expected {}); using the default {}\n", option, value, expected,
               fallback);
    return;
  }
  setenv(variable, value.c_str(), 1);
}

}  // namespace

std::string locate_preload_library() {
  if (const char* explicit_path = std::getenv("HEAPKEEPER_LIBRARY");
      explicit_path != nullptr && *explicit_path != '\0') {
    return explicit_path;
  }
  std::error_code error;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return "libheapkeeper.so";
  for (const char* relative : {"../lib/libheapkeeper.so", "../lib/heapkeeper/libheapkeeper.so"}) {
    std::filesystem::path candidate = self.parent_path() / relative;
    if (std::filesystem::exists(candidate, error)) return std::filesystem::weakly_canonical(candidate, error).string();
  }
  return "libheapkeeper.so";
}

int run_program(const RunOptions& options) {
  if (options.command.empty()) {
    fmt::print(stderr, "heapkeeper: run needs a program: heapkeeper run [options] -- PROG [ARGS...]\n");
    return 2;
  }
  const std::string library = options.library.empty() ? locate_preload_library() : options.library;
  if (access(library.c_str(), R_OK) != 0) {
    fmt::print(stderr, "heapkeeper: cannot read the preload library {}: {} (set HEAPKEEPER_LIBRARY)\n", library,
               std::strerror(errno));
    return 126;
  }
  std::string preload = library;
  if (const char* existing = std::getenv("LD_PRELOAD"); existing != nullptr && *existing != '\0') {
    preload += ":";
    preload += existing;
  }
  setenv("LD_PRELOAD", preload.c_str(), 1);
  if (!options.report_path.empty()) setenv("HEAPKEEPER_REPORT", options.report_path.c_str(), 1);
  if (!options.suppressions.empty()) setenv("HEAPKEEPER_SUPPRESSIONS", options.suppressions.c_str(), 1);
  set_checked("HEAPKEEPER_STACK_DEPTH", "--stack-depth", options.stack_depth, valid_depth(options.stack_depth),
              "a whole number from 1 to 128", "24");
  set_checked("HEAPKEEPER_MODE", "--mode", options.mode,
              options.mode == "off" || options.mode == "detect" || options.mode == "collect", "off, detect or collect",
              "detect");
  set_checked("HEAPKEEPER_ON_BAD_FREE", "--on-bad-free", options.on_bad_free,
              options.on_bad_free == "abort" || options.on_bad_free == "continue", "abort or continue", "abort");
  // Durations and exit codes are validated by the library itself, which warns with the same words.
  if (!options.scan_interval.empty()) setenv("HEAPKEEPER_SCAN_INTERVAL", options.scan_interval.c_str(), 1);
  if (!options.exit_code.empty()) setenv("HEAPKEEPER_EXITCODE", options.exit_code.c_str(), 1);
  if (options.quiet) setenv("HEAPKEEPER_QUIET", "1", 1);

  std::vector<char*> argv;
  for (const std::string& arg : options.command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  execvp(argv[0], argv.data());
  const int error = errno;
  fmt::print(stderr, "heapkeeper: cannot run {}: {}\n", options.command[0], std::strerror(error));
  return error == ENOENT ? 127 : 126;
}

}  // namespace heapkeeper::view
