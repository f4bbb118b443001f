// Environment parsing for heapkeeper's settings (see config.h). Allocation-free by design.
#include "allocator/config.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string_view>

#include "allocator/diagnostics.h"

namespace heapkeeper::alloc {
namespace {

Config g_config;

// A bad value as the warning shows it: escaped (DiagnosticLine::escaped: it may come from anyone
// who sets the environment) and at most kShownBytes of it, then "...".
constexpr size_t kShownBytes = 64;

void warn_invalid(const char* variable, const char* value, const char* expected, const char* fallback) {
  const std::string_view whole(value);
  DiagnosticLine()
      .text("invalid ")
      .text(variable)
      .text("='")
      .escaped(whole.substr(0, kShownBytes))
      .text(whole.size() > kShownBytes ? "..." : "")
      .text("' (expected ")
      .text(expected)
      .text("); using the default ")
      .text(fallback)
      .emit();
}

// A 0|1 setting: anything else keeps `value` (the default), with the usual warning.
void read_switch(const char* variable, bool& value) {
  const char* v = std::getenv(variable);
  if (v == nullptr) return;
  if (text_equals(v, "1"))
    value = true;
  else if (text_equals(v, "0"))
    value = false;
  else
    warn_invalid(variable, v, "0 or 1", value ? "1" : "0");
}

}  // namespace

const Config& config() { return g_config; }
Config& mutable_config() { return g_config; }

bool expand_pid_pattern(const char* pattern, int pid, char* out, size_t capacity) {
  if (capacity == 0) return false;
  char digits[16];
  size_t digit_count = 0;
  unsigned value = static_cast<unsigned>(pid);
  do {
    digits[digit_count++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  size_t length = 0;
  for (const char* p = pattern; *p != '\0'; ++p) {
    if (p[0] == '%' && p[1] == 'p') {
      for (size_t i = digit_count; i > 0; --i) {
        if (length + 1 >= capacity) return false;
        out[length++] = digits[i - 1];
      }
      ++p;
      continue;
    }
    if (length + 1 >= capacity) return false;
    out[length++] = *p;
  }
  out[length] = '\0';
  return true;
}

bool resolve_against_cwd(char* path, size_t capacity) {
  if (path[0] == '\0' || path[0] == '/') return true;
  char directory[4096];
  if (::getcwd(directory, sizeof(directory)) == nullptr || directory[0] != '/') return true;
  const size_t directory_length = std::strlen(directory), path_length = std::strlen(path);
  const bool slash = directory[directory_length - 1] != '/';
  const size_t total = directory_length + (slash ? 1 : 0) + path_length;
  if (total + 1 > capacity) return false;
  std::memmove(path + total - path_length, path, path_length + 1);
  std::memcpy(path, directory, directory_length);
  if (slash) path[directory_length] = '/';
  return true;
}

namespace {

// Copies a path-valued variable into `out`, absolute; warns and leaves it empty when it cannot.
void load_path(const char* variable, const char* value, char* out, size_t capacity, const char* fallback) {
  if (std::strlen(value) >= capacity) {
    warn_invalid(variable, "(too long)", "a path shorter than 4096 bytes", fallback);
    return;
  }
  std::strcpy(out, value);
  if (!resolve_against_cwd(out, capacity)) {
    out[0] = '\0';
    warn_invalid(variable, value, "a path shorter than 4096 bytes once made absolute", fallback);
  }
}

}  // namespace

void load_config_from_environment(Config& c) {
  if (const char* v = std::getenv("HEAPKEEPER_STACK_DEPTH")) {
    uint64_t depth = 0;
    if (parse_unsigned(v, depth) && depth >= 1 && depth <= Config::kMaxStackDepth)
      c.stack_depth = static_cast<int>(depth);
    else
      warn_invalid("HEAPKEEPER_STACK_DEPTH", v, "a whole number from 1 to 128", "24");
  }
  if (const char* v = std::getenv("HEAPKEEPER_FREE_STACKS")) {
    if (text_equals(v, "1") || text_equals(v, "yes") || text_equals(v, "true"))
      c.free_stacks = true;
    else if (text_equals(v, "0") || text_equals(v, "no") || text_equals(v, "false"))
      c.free_stacks = false;
    else
      warn_invalid("HEAPKEEPER_FREE_STACKS", v, "0 or 1", "0");
  }
  if (const char* v = std::getenv("HEAPKEEPER_ON_BAD_FREE")) {
    if (text_equals(v, "abort"))
      c.on_bad_free = BadFreePolicy::kAbort;
    else if (text_equals(v, "continue"))
      c.on_bad_free = BadFreePolicy::kContinue;
    else
      warn_invalid("HEAPKEEPER_ON_BAD_FREE", v, "abort or continue", "abort");
  }
  if (const char* v = std::getenv("HEAPKEEPER_MODE")) {
    if (text_equals(v, "off"))
      c.mode = CollectorMode::kOff;
    else if (text_equals(v, "detect"))
      c.mode = CollectorMode::kDetect;
    else if (text_equals(v, "collect"))
      c.mode = CollectorMode::kCollect;
    else
      warn_invalid("HEAPKEEPER_MODE", v, "off, detect or collect", "detect");
  }
  if (const char* v = std::getenv("HEAPKEEPER_SCAN_INTERVAL")) {
    uint64_t ms = 0;
    if (parse_duration_ms(v, ms))
      c.scan_interval_ms = ms;
    else
      warn_invalid("HEAPKEEPER_SCAN_INTERVAL", v, "a duration such as 10s, 500ms or 0", "0 (never)");
  }
  if (const char* v = std::getenv("HEAPKEEPER_HEAP_RESERVE")) {
    uint64_t bytes = 0;
    if (parse_byte_size(v, bytes) && bytes >= (uint64_t{1} << 30) && bytes <= (uint64_t{1} << 46))
      c.heap_reserve_bytes = bytes;
    else
      warn_invalid("HEAPKEEPER_HEAP_RESERVE", v, "a size from 1G to 64T such as 64G", "automatic");
  }
  if (const char* v = std::getenv("HEAPKEEPER_ARENAS")) {
    uint64_t n = 0;
    if (parse_unsigned(v, n) && n >= 1 && n <= 64)
      c.arenas = static_cast<unsigned>(n);
    else
      warn_invalid("HEAPKEEPER_ARENAS", v, "a whole number from 1 to 64", "one per CPU");
  }
  if (const char* v = std::getenv("HEAPKEEPER_EXITCODE")) {
    uint64_t code = 0;
    if (parse_unsigned(v, code) && code <= 255)
      c.exit_code = static_cast<int>(code);
    else
      warn_invalid("HEAPKEEPER_EXITCODE", v, "a whole number from 0 to 255", "0");
  }
  read_switch("HEAPKEEPER_QUIET", c.quiet);
  read_switch("HEAPKEEPER_RETAINED", c.retained);
  read_switch("HEAPKEEPER_PYTHON", c.python);
  if (const char* v = std::getenv("HEAPKEEPER_TRIM")) {
    if (text_equals(v, "auto"))
      c.trim = TrimPolicy::kAuto;
    else if (text_equals(v, "off"))
      c.trim = TrimPolicy::kOff;
    else
      warn_invalid("HEAPKEEPER_TRIM", v, "auto or off", "auto");
  }
  read_switch("HEAPKEEPER_STATS", c.live_stats);
  if (const char* v = std::getenv("HEAPKEEPER_STATS_DELAY")) {
    uint64_t ms = 0;
    if (parse_stats_delay_ms(v, ms))
      c.stats_delay_ms = static_cast<int64_t>(ms);
    else
      warn_invalid("HEAPKEEPER_STATS_DELAY", v, "a duration from 0 to 24h such as 0, 500ms or 5s",
                   "200ms (a forked child 1s)");
  }
  // Read here with the others, so that a bad value is one line at start-up like theirs (it was
  // read at the first scan, in words of its own, and never in a process that made none). Set but
  // empty is a bad value too, as for every setting that is not a path.
  if (const char* v = std::getenv("HEAPKEEPER_STOP_METHOD")) {
    if (text_equals(v, "ptrace"))
      c.stop_method = StopMethod::kPtrace;
    else if (text_equals(v, "signals"))
      c.stop_method = StopMethod::kSignals;
    else
      warn_invalid("HEAPKEEPER_STOP_METHOD", v, "ptrace or signals", "ptrace");
  }
  // A path set but empty means no file (for the log, stderr), as if unset: `VAR= program` is how a
  // shell turns off a value the environment carries, and LeakSanitizer's log_path reads it so.
  if (const char* v = std::getenv("HEAPKEEPER_REPORT"))
    load_path("HEAPKEEPER_REPORT", v, c.report_path, sizeof(c.report_path), "no report");
  if (const char* v = std::getenv("HEAPKEEPER_PPROF"))
    load_path("HEAPKEEPER_PPROF", v, c.pprof_path, sizeof(c.pprof_path), "no profile");
  if (const char* v = std::getenv("HEAPKEEPER_SUPPRESSIONS"))
    load_path("HEAPKEEPER_SUPPRESSIONS", v, c.suppressions_path, sizeof(c.suppressions_path), "none");
  if (const char* v = std::getenv("HEAPKEEPER_BASELINE"); v != nullptr && *v != '\0')
    load_path("HEAPKEEPER_BASELINE", v, c.baseline_path, sizeof(c.baseline_path), "none");
  // LeakSanitizer's log_path: "stderr" (or empty) is the default; a file that cannot be opened is
  // reported when first written to, and stderr used (diagnostics.cpp).
  if (const char* v = std::getenv("HEAPKEEPER_LOG_PATH"); v != nullptr && *v != '\0' && !text_equals(v, "stderr"))
    load_path("HEAPKEEPER_LOG_PATH", v, c.log_path, sizeof(c.log_path), "stderr");
}

}  // namespace heapkeeper::alloc
