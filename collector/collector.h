// The collector's lifecycle: when scans run (at exit, periodically, on request), what is kept
// between scans (which leaks are new, how many scans each survived), what is reported (stderr in
// LeakSanitizer's style, the JSON report's "leaks" section), suppressions, and `collect` mode.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "report/leak_kind.h"

namespace heapkeeper::collect {

struct LeakGroup {
  report::LeakKind kind = report::LeakKind::kDirect;
  uint32_t stack_id = 0;
  uint64_t blocks = 0, bytes = 0;
  uint64_t new_blocks = 0, new_bytes = 0;  // unreachable for the first time in this scan
  uint64_t max_age_scans = 0;              // scans the oldest block of the group has survived
  std::string suppressed_by;               // the matching suppression pattern, if any
};

struct ScanReport {
  uint64_t number = 0;   // 1 for the first scan of the process
  uint64_t time_ns = 0;  // CLOCK_REALTIME when the scan started
  bool ok = false;
  bool at_exit = false;
  std::string failure;
  bool stop_timed_out = false;  // the failure was ptrace's deadline to stop the threads (root_scan.h)
  std::string stop_method;      // how the world was stopped: "ptrace" or "signals"
  uint64_t pause_ns = 0, mark_ns = 0, threads_stopped = 0, root_ranges = 0;
  uint64_t root_bytes = 0, heap_bytes_marked = 0, live_blocks = 0, reachable_blocks = 0;
  uint64_t leaked_blocks = 0, leaked_bytes = 0, new_leaked_blocks = 0, new_leaked_bytes = 0;
  uint64_t direct_blocks = 0, indirect_blocks = 0, cycle_blocks = 0;
  uint64_t suppressed_blocks = 0, suppressed_bytes = 0;
  uint64_t reclaimed_blocks = 0, reclaimed_bytes = 0;  // collect mode, freed in this scan
  uint64_t held_blocks = 0;  // collect mode: reclaimed in this scan, freed by the next if still unreachable
  uint64_t reclaimed_blocks_total = 0, reclaimed_bytes_total = 0;  // collect mode, all scans so far
  std::vector<LeakGroup> groups;                                   // largest first, suppressed ones included
  // Reference counts ("refcounts") of reachable blocks: a histogram, and the most referenced.
  uint64_t reference_histogram[6] = {};
  struct Referenced {
    uint64_t size = 0;
    uint32_t references = 0, stack_id = 0;
  };
  std::vector<Referenced> most_referenced;
  // Retained sizes (collector/retained_analysis.h): what freeing a block, or every block of an
  // allocation site, would make unreachable. Computed after the world resumes.
  bool retained_known = false;
  uint64_t retained_analysis_ns = 0, references_recorded = 0;
  struct RetainedSite {
    uint32_t stack_id = 0;
    uint64_t blocks = 0, bytes = 0;  // reachable blocks of the site in this scan
    uint64_t retained_bytes = 0;
  };
  std::vector<RetainedSite> retained_sites;  // the sites with most reachable bytes, largest first
  struct RetainedBlock {
    uintptr_t address = 0;
    uint64_t size = 0, retained_bytes = 0;
    uint32_t stack_id = 0;
  };
  std::vector<RetainedBlock> top_retainers;  // the blocks that retain most, largest first
};

// Connects the collector to the engine and the report (constructor time, guard held): suspend
// handler, exit scan, periodic scanning thread, the JSON report section.
void install();
// Registers the handler that turns leaks at exit into HEAPKEEPER_EXITCODE; call after the report
// layer's exit handler so the report is written first.
void install_exit_status();

// Runs a scan now and returns its report (serialised with any other scan). Guard held.
class ReferenceGraph;
// `inspect`, when given, is called with the scan's analysed reference graph (retainers.h), after
// the world resumes and before the graph is unmapped; the graph is recorded for it whatever
// HEAPKEEPER_RETAINED says.
ScanReport scan_now(bool at_exit, uintptr_t caller_stack_pointer, const uint64_t* registers, size_t register_count,
                    bool reclaim = false, const std::function<void(ReferenceGraph&)>& inspect = {});
ScanReport last_scan();
// Applies the suppressions to `report`'s groups (LeakGroup::suppressed_by, suppressed_blocks and
// bytes), asking the binary about stacks it has not answered for yet, and the same verdicts to the
// stored copy of that scan. Never while the scan lock is held; nothing when no suppressions are
// set. The exit scan's verdicts come with the exit report instead.
void settle_suppressions(ScanReport& report);
// An exec of the program's (preload/exec_calls.cpp) waits for a scan in progress to end, and no
// scan starts until it has failed (allow_scans_after_exec): under the signal fallback, a scan's
// SIGPWR sent to a thread already inside execve stays pending across it, and the new image, whose
// handlers the exec reset to SIG_DFL, died of it. True if scans are held off; false for calls that
// need not wait (heapkeeper's own, a vfork child's, the collector off, the exec's own thread
// already holding the scan lock, or no scan ending within 10 s).
bool hold_scans_for_exec() noexcept;
void allow_scans_after_exec(bool held) noexcept;
// What fork()'s handlers do around a fork made without fork() (preload/raw_fork.h): waits for a
// scan in progress, whose loader lock the child would inherit held. True if held.
bool hold_scans_for_raw_fork() noexcept;
void allow_scans_after_raw_fork_in_parent(bool held) noexcept;
// The most recent scans, oldest first (at most `limit`); only the last one keeps its groups.
std::vector<ScanReport> recent_scans(size_t limit);

}  // namespace heapkeeper::collect
