// heapkeeper's settings, read once from HEAPKEEPER_* environment variables at start-up.
//
// Parsing runs before the private heap exists, so it never allocates: values are parsed in place
// and strings are copied into fixed buffers. A bad value is reported in one line naming the
// variable and the default that is used instead; the program always runs on.
#pragma once

#include <cstddef>
#include <cstdint>

#include "allocator/setting_text.h"

namespace heapkeeper::alloc {

enum class BadFreePolicy : uint8_t { kAbort, kContinue };
enum class CollectorMode : uint8_t { kOff, kDetect, kCollect };
// Whether the heap gives freed memory back on its own (heap_trimmer.h): kAuto, the trimmer (or, in
// collect mode, jemalloc's decay); kOff, never: only `heapkeeper trim` and an exhausted reservation.
enum class TrimPolicy : uint8_t { kAuto, kOff };
// How scans stop the world (collector/world_stop.h): kPtrace, falling back to signals where ptrace
// is refused; kSignals, the fallback from the start.
enum class StopMethod : uint8_t { kPtrace, kSignals };

struct Config {
  static constexpr int kMaxStackDepth = 128;
  int stack_depth = 24;      // HEAPKEEPER_STACK_DEPTH, 1..128
  bool free_stacks = false;  // HEAPKEEPER_FREE_STACKS=1: full stack of each free (else its caller)
  BadFreePolicy on_bad_free = BadFreePolicy::kAbort;  // HEAPKEEPER_ON_BAD_FREE=abort|continue
  CollectorMode mode = CollectorMode::kDetect;        // HEAPKEEPER_MODE=off|detect|collect
  uint64_t scan_interval_ms = 0;                      // HEAPKEEPER_SCAN_INTERVAL (e.g. 10s, 500ms; 0 = never)
  uint64_t heap_reserve_bytes = 0;                    // HEAPKEEPER_HEAP_RESERVE (e.g. 64G); 0 = automatic
  unsigned arenas = 0;                                // HEAPKEEPER_ARENAS; 0 = one per CPU, at most 8
  int exit_code = 0;                                  // HEAPKEEPER_EXITCODE (used by the collector)
  bool quiet = false;                                 // HEAPKEEPER_QUIET=1: no summary line at exit
  bool live_stats = true;                             // HEAPKEEPER_STATS=0: no shared-memory segment, no publisher
  // HEAPKEEPER_STATS_DELAY (e.g. 0, 2s): how long a process runs before it makes its segment;
  // -1 = the default (stats::kFirstPublishDelayMs, a forked child a second).
  int64_t stats_delay_ms = -1;
  bool retained = true;                 // HEAPKEEPER_RETAINED=0: scans record no reference graph (no retained sizes)
  TrimPolicy trim = TrimPolicy::kAuto;  // HEAPKEEPER_TRIM=auto|off
  bool python = true;                   // HEAPKEEPER_PYTHON=0: no Python frames in stacks (python_frames.h)
  StopMethod stop_method = StopMethod::kPtrace;  // HEAPKEEPER_STOP_METHOD=ptrace|signals
  // Paths are made absolute at start-up (the program may chdir before exit: git -C, make -C).
  char report_path[4096] = {};        // HEAPKEEPER_REPORT, '%p' expands to the pid
  char pprof_path[4096] = {};         // HEAPKEEPER_PPROF ('%p' = pid): gzipped pprof profile at exit
  char suppressions_path[4096] = {};  // HEAPKEEPER_SUPPRESSIONS
  char baseline_path[4096] = {};      // HEAPKEEPER_BASELINE: a report whose leak sites EXITCODE ignores
  char log_path[4096] = {};           // HEAPKEEPER_LOG_PATH ('%p' = pid): diagnostics there, not on stderr
};

// Reads the environment into `config`, warning on stderr about each invalid value.
void load_config_from_environment(Config& config);

// Makes a relative `path` (capacity bytes) absolute against the current directory, in place and
// without allocating; false (path unchanged) if the result would not fit. An absolute path, or a
// directory that cannot be named (deleted), leaves it as it is.
bool resolve_against_cwd(char* path, size_t capacity);

// Expands '%p' in `pattern` to `pid` into `out` (capacity bytes); false if it does not fit.
bool expand_pid_pattern(const char* pattern, int pid, char* out, size_t capacity);

const Config& config();
Config& mutable_config();

}  // namespace heapkeeper::alloc
