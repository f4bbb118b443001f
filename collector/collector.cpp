// Implementation of the collector's lifecycle (see collector.h).
#include "collector/collector.h"

#include <pthread.h>
#include <ucontext.h>
#include <unistd.h>

#include <sys/syscall.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <unordered_map>

#include "allocator/block_header.h"
#include "allocator/block_map.h"
#include "allocator/config.h"
#include "allocator/diagnostics.h"
#include "allocator/engine.h"
#include "allocator/fork_replaceable.h"
#include "allocator/heap_trimmer.h"
#include "allocator/monotonic_clock.h"
#include "allocator/quarantine.h"
#include "allocator/raw_syscall.h"
#include "allocator/stack_table.h"
#include "allocator/thread_credentials.h"
#include "allocator/thread_registry.h"
#include "collector/kernel_roots.h"
#include "collector/os_primitives.h"
#include "collector/program_caller.h"
#include "collector/protection_keys.h"
#include "collector/reference_graph.h"
#include "collector/retained_analysis.h"
#include "collector/root_scan.h"
#include "collector/suppressions.h"
#include "collector/world_stop.h"
#include "report/exit_report.h"
#include "report/raw_dump.h"

namespace heapkeeper::collect {
namespace {

struct KnownLeak {
  uint32_t sequence;
  uint64_t first_scan;
};

// A block collect mode holds for one more scan before freeing it (allocator/quarantine.h).
struct HeldBlock {
  uintptr_t region;
  uint32_t sequence, stack_id;
  uint64_t size, user_offset;
};

struct CollectorState {
  std::timed_mutex scan_mutex;  // one scan at a time (the periodic thread, the exit scan, commands)
  std::mutex results_mutex;     // `last` and `history`, read by the publisher without waiting for a scan
  uint64_t scans = 0;
  std::unordered_map<uintptr_t, KnownLeak> known;  // leaked blocks of the previous scan
  Suppressions suppressions;
  bool suppressions_loaded = false;
  // Which allocation stacks the suppressions hide (the pattern; empty: none does), as the binary
  // answered (report::find_suppressed_stacks). Stack ids are stable for the process's life, so
  // each stack is asked about once. Guarded by results_mutex.
  std::unordered_map<uint32_t, std::string> verdicts;
  bool verdicts_unavailable = false;  // the binary could not answer: said once, not asked again
  ScanReport last;
  std::vector<ScanReport> history;  // the last kHistory scans, without their groups
  std::atomic<bool> exit_scan_done{false};
  uint64_t reclaimed_blocks_total = 0, reclaimed_bytes_total = 0;  // collect mode, since start
  std::vector<HeldBlock> held;  // collect mode: in quarantine since the previous scan
};

alloc::ForkReplaceable<CollectorState> g_state;  // see fork_replaceable.h

CollectorState& state() { return g_state.get(); }

void load_suppressions_once(CollectorState& s) {
  if (s.suppressions_loaded) return;
  s.suppressions_loaded = true;
  const char* path = alloc::config().suppressions_path;
  if (path[0] == '\0') return;
  std::string error;
  if (!s.suppressions.load(path, error)) {
    alloc::DiagnosticLine().escaped(error).text("; no leaks are suppressed").emit();
  }
}

void fill_report(CollectorState& s, const ScanResult& result, ScanReport& report) {
  report.pause_ns = result.pause_ns;
  report.mark_ns = result.mark_ns;
  report.threads_stopped = result.threads_stopped;
  report.root_ranges = result.root_ranges;
  report.root_bytes = result.figures.root_bytes;
  report.heap_bytes_marked = result.figures.heap_bytes;
  report.live_blocks = result.figures.live_blocks;
  report.reachable_blocks = result.figures.reachable_blocks;
  report.leaked_blocks = result.figures.leaked_blocks;
  report.leaked_bytes = result.figures.leaked_bytes;
  report.direct_blocks = result.figures.direct_blocks;
  report.indirect_blocks = result.figures.indirect_blocks;
  report.cycle_blocks = result.figures.cycle_blocks;
  for (int i = 0; i < ReferenceSummary::kBuckets; ++i) report.reference_histogram[i] = result.references.histogram[i];
  for (const auto& top : result.references.most_referenced) {
    if (top.references == 0) break;
    report.most_referenced.push_back({top.size, top.references, top.stack_id});
  }

  // Group by (kind, stack content); note which leaks are new since the previous scan.
  struct GroupKey {
    report::LeakKind kind;
    uint64_t stack_hash;
    bool operator==(const GroupKey& o) const { return kind == o.kind && stack_hash == o.stack_hash; }
  };
  struct GroupKeyHash {
    size_t operator()(const GroupKey& k) const {
      return std::hash<uint64_t>()(k.stack_hash * report::kLeakKinds + static_cast<uint64_t>(k.kind));
    }
  };
  std::unordered_map<GroupKey, LeakGroup, GroupKeyHash> groups;
  std::unordered_map<uintptr_t, KnownLeak> now_known;
  now_known.reserve(result.leak_count);
  for (size_t i = 0; i < result.leak_count; ++i) {
    const LeakedBlock& leak = result.leaks[i];
    // A thread that could not be stopped (tearing itself down with signals blocked) may have freed
    // the block during the scan: only what is still the same live block is a leak.
    if (!alloc::block_map().is_live(leak.region) || alloc::block_map().header(leak.region)->sequence != leak.sequence) {
      --report.leaked_blocks;
      report.leaked_bytes -= leak.size;
      if (leak.kind == report::LeakKind::kDirect)
        --report.direct_blocks;
      else if (leak.kind == report::LeakKind::kCycle)
        --report.cycle_blocks;
      else
        --report.indirect_blocks;
      continue;
    }
    uint64_t first_scan = report.number;
    auto previous = s.known.find(leak.region);
    if (previous != s.known.end() && previous->second.sequence == leak.sequence)
      first_scan = previous->second.first_scan;
    now_known[leak.region] = {leak.sequence, first_scan};
    GroupKey key{leak.kind, alloc::stack_table().site_key(leak.stack_id)};
    LeakGroup& group = groups[key];
    group.kind = leak.kind;
    group.stack_id = leak.stack_id;
    ++group.blocks;
    group.bytes += leak.size;
    if (first_scan == report.number) {
      ++group.new_blocks;
      group.new_bytes += leak.size;
      ++report.new_leaked_blocks;
      report.new_leaked_bytes += leak.size;
    }
    group.max_age_scans = std::max(group.max_age_scans, report.number - first_scan);
  }
  s.known = std::move(now_known);
  // Suppressions match function names, which only the `heapkeeper` binary knows: it applies them
  // to the report (report/raw_dump.h); here every group stands.
  for (auto& [key, group] : groups) report.groups.push_back(std::move(group));
  std::sort(report.groups.begin(), report.groups.end(), [](const LeakGroup& a, const LeakGroup& b) {
    if (a.kind != b.kind) return report::leak_kind_rank(a.kind) < report::leak_kind_rank(b.kind);
    return a.bytes != b.bytes ? a.bytes > b.bytes : a.blocks > b.blocks;
  });
}

// Marks the groups of `report` that a known verdict suppresses and sums them; returns the stacks
// of groups nobody has a verdict for yet. Caller holds results_mutex.
std::vector<uint32_t> apply_verdicts(const CollectorState& s, ScanReport& report) {
  std::vector<uint32_t> unknown;
  report.suppressed_blocks = report.suppressed_bytes = 0;
  for (LeakGroup& g : report.groups) {
    const auto verdict = s.verdicts.find(g.stack_id);
    if (verdict == s.verdicts.end()) {
      unknown.push_back(g.stack_id);
      continue;
    }
    g.suppressed_by = verdict->second;
    if (g.suppressed_by.empty()) continue;
    report.suppressed_blocks += g.blocks;
    report.suppressed_bytes += g.bytes;
  }
  return unknown;
}

// collect mode. A block unreachable in two consecutive scans is reclaimed: held in quarantine,
// still allocated; the next scan frees it if it is still unreachable, or keeps it (and says so) if
// a reference to it appeared. Both scans must agree before a block is held, so a pointer hidden
// for one moment (being moved between registers, say) never costs the program a live block, and
// nothing is freed before a third scan confirms it: a pointer the program hid for longer (or kept
// where no scan looks) shows up as a "reclaimed too early" line, not as a crash. `s.known` holds
// this scan's leaks (fill_report), `previous` the last scan's.
// Without `hold_new` (a scan that is not asked to reclaim: detect mode after a `heapkeeper view`
// collect request) only the blocks already held are settled.
void reclaim(CollectorState& s, const ScanResult& result, ScanReport& report,
             const std::unordered_map<uintptr_t, KnownLeak>& previous, bool hold_new) {
  alloc::Quarantine& quarantine = alloc::quarantine();
  for (const HeldBlock& held : s.held) {
    if (!quarantine.release(held.region)) continue;  // the program freed or reallocated it: its call decided
    auto now = s.known.find(held.region);
    const bool unreachable = now != s.known.end() && now->second.sequence == held.sequence;
    if (unreachable) {
      if (alloc::free_reclaimed(held.region, held.sequence)) {
        ++report.reclaimed_blocks;
        report.reclaimed_bytes += held.size;
      }
    } else if (alloc::block_map().is_live(held.region) &&
               alloc::block_map().header(held.region)->sequence == held.sequence) {
      alloc::report_reclaimed_too_early(held.region + held.user_offset, held.size, held.stack_id,
                                        "referenced again while held for one more scan before being freed: kept");
    }
  }
  s.held.clear();
  for (size_t i = 0; hold_new && i < result.leak_count; ++i) {
    const LeakedBlock& leak = result.leaks[i];
    auto it = previous.find(leak.region);
    if (it == previous.end() || it->second.sequence != leak.sequence || it->second.first_scan >= report.number)
      continue;
    const alloc::BlockHeader* header = alloc::block_map().header(leak.region);
    // Freed just above, or by the program since this scan's classification: not a leak any more.
    if (!alloc::block_map().is_live(leak.region) || header->sequence != leak.sequence) continue;
    if (!quarantine.hold(leak.region)) continue;
    s.held.push_back({leak.region, leak.sequence, leak.stack_id, leak.size, header->user_offset()});
  }
  report.held_blocks = s.held.size();
}

// The last scan's facts for the raw dump (report/raw_dump.h): the binary renders the JSON
// report's "leaks", "scan", "scans" and "collected" from them, after applying the suppressions.
void add_scan_to_dump(report::RawReport& doc) {
  CollectorState& s = state();
  const ScanReport r = last_scan();
  doc.suppressions = s.suppressions.patterns();
  if (r.number == 0) return;
  report::RawScan& out = doc.scan;
  out.present = true;
  out.number = r.number;
  out.ok = r.ok;
  out.at_exit = r.at_exit;
  out.failure = r.failure;
  out.stop_method = r.stop_method;
  out.pause_ns = r.pause_ns;
  out.mark_ns = r.mark_ns;
  out.threads_stopped = r.threads_stopped;
  out.root_ranges = r.root_ranges;
  out.root_bytes = r.root_bytes;
  out.heap_bytes_marked = r.heap_bytes_marked;
  out.live_blocks = r.live_blocks;
  out.reachable_blocks = r.reachable_blocks;
  out.leaked_blocks = r.leaked_blocks;
  out.leaked_bytes = r.leaked_bytes;
  out.new_leaked_blocks = r.new_leaked_blocks;
  out.new_leaked_bytes = r.new_leaked_bytes;
  out.reclaimed_blocks = r.reclaimed_blocks;
  out.reclaimed_bytes = r.reclaimed_bytes;
  out.held_blocks = r.held_blocks;
  out.reclaimed_blocks_total = r.reclaimed_blocks_total;
  out.reclaimed_bytes_total = r.reclaimed_bytes_total;
  out.direct_blocks = r.direct_blocks;
  out.indirect_blocks = r.indirect_blocks;
  out.cycle_blocks = r.cycle_blocks;
  for (int i = 0; i < 6; ++i) out.reference_histogram[i] = r.reference_histogram[i];
  out.scans = s.scans;
  out.collected_blocks = s.reclaimed_blocks_total;
  out.collected_bytes = s.reclaimed_bytes_total;
  for (const LeakGroup& g : r.groups)
    out.groups.push_back({g.kind, g.stack_id, g.blocks, g.bytes, g.new_blocks, g.new_bytes, g.max_age_scans});
  for (const ScanReport::Referenced& b : r.most_referenced)
    out.most_referenced.push_back({b.size, b.references, b.stack_id});
  out.retained_known = r.retained_known;
  out.retained_analysis_ns = r.retained_analysis_ns;
  out.references_recorded = r.references_recorded;
  for (const ScanReport::RetainedSite& site : r.retained_sites)
    out.retained_sites.push_back({site.stack_id, site.blocks, site.bytes, site.retained_bytes});
  for (const ScanReport::RetainedBlock& block : r.top_retainers)
    out.top_retainers.push_back({block.address, block.size, block.retained_bytes, block.stack_id});
}

// Whether every block the program allocated has been freed, so nothing can have leaked (other
// threads may still allocate: at exit, as for any scan while they run, what they allocate after
// this is theirs).
bool nothing_live() {
  const alloc::ThreadTotals totals = alloc::thread_registry().totals();
  return totals.allocations == totals.frees;
}

void exit_scan() {
  const alloc::Config& cfg = alloc::config();
  if (cfg.mode == alloc::CollectorMode::kOff) return;
  // Registers and stack of this (program) thread are roots: the program's, from the frame that
  // called heapkeeper's exit handler up, not heapkeeper's own frames below it (program_caller.h).
  // If that frame cannot be found, everything from here up, and this frame's registers.
  ucontext_t context;
  getcontext(&context);
  // Unwinding to the program's frame reads the unwind tables of every module on the way: a cost
  // a process with nothing live (whose scan is skipped) need not pay.
  const bool anything_live = !nothing_live();
  const ProgramCaller caller = anything_live ? find_program_caller() : ProgramCaller{};
  // The scan maps its bitmaps, work list and root tables afresh: give back first the pages the
  // arenas keep for reuse (the trimmer leaves each up to a megabyte), which an exiting program will
  // not reuse, so the scan's buffers take their place instead of adding to the peak (python3's
  // churn: up to 2 MiB kept, about 1.5 MiB of scan). Not when the scan is skipped, which costs a
  // short process nothing, nor under HEAPKEEPER_TRIM=off.
  if (anything_live && cfg.trim != alloc::TrimPolicy::kOff) alloc::purge_unused_memory();
  uintptr_t stack_from = reinterpret_cast<uintptr_t>(&context);
  const uint64_t* registers = reinterpret_cast<const uint64_t*>(context.uc_mcontext.gregs);
  size_t register_count = NGREG;
  if (caller.stack_pointer > stack_from) {
    stack_from = caller.stack_pointer;
    registers = caller.registers;
    register_count = ProgramCaller::kRegisters;
  }
  // The program is inside exit(): whatever the scan, its grouping or the report's strings throw
  // (bad_alloc under a tight ulimit, say) ends here as one line, never as std::terminate.
  try {
    ScanReport report = scan_now(true, stack_from, registers, register_count);
    // Once more when the threads did not stop in time (a starved machine, as for the periodic
    // scans): a process's exit report is worth three seconds more.
    if (!report.ok && report.stop_timed_out) report = scan_now(true, stack_from, registers, register_count);
    // The leak report itself is written by the report layer's exit handler, which runs next.
    if (!report.ok) alloc::DiagnosticLine().text("leak scan at exit skipped: ").text(report.failure).emit();
  } catch (const std::exception& error) {
    alloc::DiagnosticLine().text("leak scan at exit failed: ").text(error.what()).emit();
  } catch (...) {
    alloc::DiagnosticLine().text("leak scan at exit failed").emit();
  }
}

void exit_status() {
  const alloc::Config& cfg = alloc::config();
  if (cfg.exit_code == 0 || cfg.mode == alloc::CollectorMode::kOff) return;
  const ScanReport report = last_scan();
  if (!report.at_exit || report.leaked_blocks == 0 || !report::exit_verdict().unsuppressed_leaks) return;
  fflush(nullptr);  // we are the last exit handler: only stdio's own flush would have followed
  _exit(cfg.exit_code);
}

// When the first periodic scan is due (CLOCK_MONOTONIC): an interval after the scanner was asked
// for, whether its thread started then or later (start_periodic_scanner).
uint64_t g_first_scan_ns = 0;

// Periodic scans skipped in a row because ptrace's deadline to stop the threads passed before one
// is said. On a starved machine (two cores and a parallel build) a thread may not get the CPU to
// stop within the 3 s; the next scan an interval later then succeeds, and a line on the program's
// stderr for each such scan changed its output for nothing. A thread that really cannot be stopped
// (held in the kernel) fails every scan and is named after this many.
constexpr unsigned kTimedOutScansBeforeSaying = 3;
// Any other failure is said when it first happens, and not again while every scan fails the same
// way: after a chroot into a directory without /proc, or while the program holds every descriptor
// its limit allows, every scan fails on the maps file, and a line for each (every 20 ms with
// HEAPKEEPER_SCAN_INTERVAL=20ms) flooded the program's stderr. A scan that runs ends the
// silence, as it restarts the count of timeouts.

void periodic_scanner() {
  const uint64_t interval_ms = alloc::config().scan_interval_ms;
  // Started again after a pause (engine.h's pause_internal_threads): the next scan an interval on.
  static std::atomic<bool> scanned_before{false};
  if (!alloc::internal_sleep_until(g_first_scan_ns)) return;
  unsigned timed_out_in_a_row = 0;
  std::string failure_said;  // since the last scan that ran
  for (bool first_scan = !scanned_before.exchange(true);; first_scan = false) {
    if (!first_scan && !alloc::internal_sleep_ms(interval_ms)) return;
    ScanReport report;
    try {
      // Credentials a program thread shares meanwhile are taken after it (thread_credentials.h):
      // the sharer waits for the end of a scan longer than its usual second.
      alloc::set_internal_thread_busy(true);
      report = scan_now(false, 0, nullptr, 0);
    } catch (const std::exception& error) {  // one failed scan; the next may succeed
      alloc::set_internal_thread_busy(false);
      alloc::DiagnosticLine().text("periodic leak scan failed: ").text(error.what()).emit();
      continue;
    }
    alloc::set_internal_thread_busy(false);
    if (state().exit_scan_done) return;
    if (!report.ok) {
      if (report.stop_timed_out && ++timed_out_in_a_row != kTimedOutScansBeforeSaying) continue;
      if (!report.stop_timed_out) {
        if (report.failure == failure_said) continue;
        failure_said = report.failure;
      }
      alloc::DiagnosticLine line;
      line.text("periodic leak scan skipped: ").text(report.failure);
      if (report.stop_timed_out) line.text(" (").number(timed_out_in_a_row).text(" scans in a row)");
      line.emit();
      continue;
    }
    timed_out_in_a_row = 0;
    failure_said.clear();
    if (report.new_leaked_blocks == 0 || alloc::config().quiet) continue;
    try {
      settle_suppressions(report);
    } catch (const std::exception& error) {  // the line is printed without suppressions
      alloc::DiagnosticLine().text("applying suppressions failed: ").escaped(error.what()).emit();
    }
    uint64_t new_blocks = 0, new_bytes = 0;
    for (const LeakGroup& g : report.groups) {
      if (!g.suppressed_by.empty()) continue;
      new_blocks += g.new_blocks;
      new_bytes += g.new_bytes;
    }
    if (new_blocks == 0) continue;
    alloc::DiagnosticLine line;
    line.text("scan ")
        .number(report.number)
        .text(": ")
        .number(new_blocks)
        .text(" new leaked blocks (")
        .bytes(new_bytes)
        .text("); ")
        .number(report.leaked_blocks - report.suppressed_blocks)
        .text(" leaked in all (")
        .bytes(report.leaked_bytes - report.suppressed_bytes)
        .text(")");
    if (report.suppressed_blocks > 0)
      line.text(", and ")
          .number(report.suppressed_blocks)
          .text(" suppressed (")
          .bytes(report.suppressed_bytes)
          .text(")");
    line.emit();
  }
}

// `later`: a forked child's scanner, whose thread is made only when its first scan is due (or when
// the child first waits in a wrapped call: allocator/engine.h), since most children exec or exit
// before that. A program's own image makes it at once: a process that blocks from its first
// milliseconds in a call no trigger sees (stdio's reads, waitpid) must still be scanned.
void start_periodic_scanner(bool later) {
  const alloc::Config& cfg = alloc::config();
  if (cfg.scan_interval_ms == 0 || cfg.mode == alloc::CollectorMode::kOff) return;
  // Saturating: an interval of centuries (HEAPKEEPER_SCAN_INTERVAL=5124094h, which the setting
  // accepts) wrapped past UINT64_MAX nanoseconds and made the first scan due at once.
  const uint64_t now_ns = alloc::monotonic_ns();
  const uint64_t interval_ms = std::min<uint64_t>(cfg.scan_interval_ms, (UINT64_MAX - now_ns) / 1000000ull);
  g_first_scan_ns = now_ns + interval_ms * 1000000ull;
  static constexpr char kFailure[] = "could not start the periodic leak scanner thread";
  if (later) {
    // Made a second in at the latest, as the publisher is (its first scan still waits for the
    // interval): until it is, each of the child's reads of a regular file asks the kernel what it
    // reads (allocator/engine.h), which made small reads 2.2 times as slow for as long.
    constexpr uint64_t kLatestStartMs = 1000;
    const auto delay_ms = static_cast<uint32_t>(std::min<uint64_t>(cfg.scan_interval_ms, kLatestStartMs));
    alloc::start_internal_thread_later(periodic_scanner, "heapkeeper-scan", delay_ms, kFailure);
  } else {
    alloc::start_internal_thread_or_say(periodic_scanner, "heapkeeper-scan", kFailure);
  }
}

}  // namespace

constexpr size_t kHistory = 16;

// The reference graph's stream: room for 8 G words (32 GB of address space mapped without
// reserve, touched only as written); under an address-space limit the graph is skipped.
constexpr uint64_t kGraphStreamWords = uint64_t{1} << 33;

// How many blocks are live now, from the block map's live bits (cheap: one bit per 16 bytes of
// heap): what the next scan's reference graph should expect.
uint64_t live_block_estimate() {
  const alloc::BlockMap& map = alloc::block_map();
  uint64_t live = 0;
  for (size_t w = 0, words = map.word_count(); w < words; ++w)
    live += static_cast<uint64_t>(__builtin_popcountll(map.live_word(w)));
  return live;
}

ScanReport scan_now(bool at_exit, uintptr_t caller_stack_pointer, const uint64_t* registers, size_t register_count,
                    bool reclaim_now, const std::function<void(ReferenceGraph&)>& inspect) {
  CollectorState& s = state();
  std::lock_guard<std::timed_mutex> lock(s.scan_mutex);
  load_suppressions_once(s);
  ScanReport report;
  if (s.exit_scan_done) {  // the process is exiting: the exit scan's verdict is final
    report.failure = "the process is exiting";
    return report;
  }
  report.number = ++s.scans;
  report.at_exit = at_exit;
  timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  report.time_ns = static_cast<uint64_t>(wall.tv_sec) * 1000000000ull + static_cast<uint64_t>(wall.tv_nsec);
  // The reference graph, for retained sizes: recorded unless turned off, and at exit only when a
  // JSON report will show it (the text report does not).
  const alloc::Config& cfg = alloc::config();
  const bool skip = at_exit && nothing_live();
  const bool record_graph = !skip && (inspect || (cfg.retained && (!at_exit || cfg.report_path[0] != '\0')));
  ReferenceGraph graph;
  const bool graph_ready = record_graph && graph.prepare(kGraphStreamWords, live_block_estimate());
  ScanRequest request{caller_stack_pointer, registers, register_count, graph_ready ? &graph : nullptr};
  Marker marker;
  ScanResult result;
  if (skip) {
    // Nothing allocated is left, so nothing can have leaked: a process that freed all it
    // allocated, or never allocated (/bin/true), skips stopping the world and reading its roots,
    // which is most of what heapkeeper would cost such a short process at exit.
    result.ok = true;
    std::snprintf(result.stop_method, sizeof(result.stop_method), "none");
  } else {
    result = scan_heap(request, marker);
  }
  report.ok = result.ok;
  report.stop_method = result.stop_method;
  if (!result.ok) {
    report.failure = result.failure;
    report.stop_timed_out = result.stop_timed_out;
    return report;
  }
  const std::unordered_map<uintptr_t, KnownLeak> previous = s.known;
  fill_report(s, result, report);
  // Where the graph's blocks lie follows from the live bitmap the marker ranked them by, copied
  // now rather than recorded block by block in the pause.
  if (marker.graph() != nullptr &&
      graph.set_block_addresses(marker.heap_base(), marker.live_snapshot(), marker.snapshot_words()))
    analyse_retained(graph, report);
  if (inspect && graph.analysed()) inspect(graph);
  const bool hold_new = reclaim_now || alloc::config().mode == alloc::CollectorMode::kCollect;
  if ((hold_new || !s.held.empty()) && !at_exit) {
    const AllProtectionKeysOpen keys;  // freeing writes blocks' headers, in pages the program may have keyed
    reclaim(s, result, report, previous, hold_new);
  }
  s.reclaimed_blocks_total += report.reclaimed_blocks;
  s.reclaimed_bytes_total += report.reclaimed_bytes;
  report.reclaimed_blocks_total = s.reclaimed_blocks_total;
  report.reclaimed_bytes_total = s.reclaimed_bytes_total;
  ScanReport summary;
  {
    std::lock_guard<std::mutex> results(s.results_mutex);
    apply_verdicts(s, report);
    summary = report;
    summary.groups.clear();
    s.last = report;
    if (s.history.size() == kHistory) s.history.erase(s.history.begin());
    s.history.push_back(std::move(summary));
  }
  if (at_exit) s.exit_scan_done = true;
  return report;
}

void settle_suppressions(ScanReport& report) {
  CollectorState& s = state();
  std::vector<uint32_t> unknown;
  {
    std::lock_guard<std::mutex> results(s.results_mutex);
    if (s.suppressions.empty() || s.verdicts_unavailable) return;
    unknown = apply_verdicts(s, report);
  }
  if (unknown.empty()) return;
  // Asked without any lock held: the binary may take a while (its first answer reads the
  // program's modules), and neither a scan nor the program's fork may wait for it.
  std::vector<report::RawAnswer::Suppressed> suppressed;
  std::string why;
  const bool answered = report::find_suppressed_stacks(unknown, s.suppressions.patterns(), suppressed, why);
  std::lock_guard<std::mutex> results(s.results_mutex);
  if (!answered) {
    if (!s.verdicts_unavailable && !alloc::config().quiet)
      alloc::DiagnosticLine()
          .text("suppressions are not applied to scans while the program runs: ")
          .escaped(why)
          .emit();
    s.verdicts_unavailable = true;
    return;
  }
  for (uint32_t id : unknown) s.verdicts.emplace(id, std::string());
  for (report::RawAnswer::Suppressed& hidden : suppressed) s.verdicts[hidden.stack_id] = std::move(hidden.pattern);
  apply_verdicts(s, report);
  // The stored copies (the live stats' leak table and series read them) get the same verdicts.
  if (s.last.number == report.number) apply_verdicts(s, s.last);
  for (ScanReport& earlier : s.history) {
    if (earlier.number != report.number) continue;
    earlier.suppressed_blocks = report.suppressed_blocks;
    earlier.suppressed_bytes = report.suppressed_bytes;
  }
}

std::vector<ScanReport> recent_scans(size_t limit) {
  CollectorState& s = state();
  std::lock_guard<std::mutex> lock(s.results_mutex);
  size_t first = s.history.size() > limit ? s.history.size() - limit : 0;
  return std::vector<ScanReport>(s.history.begin() + static_cast<std::ptrdiff_t>(first), s.history.end());
}

ScanReport last_scan() {
  CollectorState& s = state();
  std::lock_guard<std::mutex> lock(s.results_mutex);
  return s.last;
}

// The process whose scans scan_mutex serialises (a vfork child shares its memory, a raw clone's
// child a copy: neither has a scanner of its own), and the program thread that holds scan_mutex
// for a fork or an exec (0: none): a signal handler that interrupted that thread and forks or
// execs in turn must not wait for itself.
static std::atomic<pid_t> g_scanning_process{0};
static std::atomic<pid_t> g_program_holder{0};

// A fork waits for a scan in progress to end. A scan holds the dynamic loader's lock from before
// it stops the world until after it resumes it, and a child forked meanwhile would inherit that
// lock held by a thread it does not have: its first dlopen (or its own scanner) would hang. Forks
// (from signal handlers) this thread makes while it holds the mutex itself are not waited for.
static thread_local unsigned t_nested_forks = 0;
static void wait_for_scans_before_fork() {
  const pid_t self = current_tid();
  if (g_program_holder.load(std::memory_order_acquire) == self) {
    ++t_nested_forks;
    return;
  }
  // Guarded: the first use of the collector's state allocates it, from heapkeeper's own arena.
  alloc::enter_internal();
  state().scan_mutex.lock();
  alloc::leave_internal();
  g_program_holder.store(self, std::memory_order_release);
}
static void allow_scans_after_fork_in_parent() {
  if (t_nested_forks > 0) {
    --t_nested_forks;
    return;
  }
  g_program_holder.store(0, std::memory_order_release);
  state().scan_mutex.unlock();
}
// (The child replaces the whole collector state, this mutex included: see fork_replaceable.h.)

// How long an exec waits for a scan in progress at most: the world stop's own 3 s and a large
// heap's marking. Past it the exec goes ahead (the old race, rather than a hang).
constexpr auto kExecWaitsForScan = std::chrono::seconds(10);

bool hold_scans_for_exec() noexcept {
  if (alloc::config().mode == alloc::CollectorMode::kOff) return false;
  if (alloc::raw_syscall(SYS_getpid) != g_scanning_process.load(std::memory_order_acquire)) return false;
  const alloc::ThreadLocal& thread = alloc::tls_thread;
  if (thread.guard != 0 || (thread.state != nullptr && thread.state->heapkeeper_thread)) return false;
  const pid_t self = current_tid();
  if (g_program_holder.load(std::memory_order_acquire) == self) return false;
  alloc::enter_internal();
  bool held = false;
  try {
    held = state().scan_mutex.try_lock_for(kExecWaitsForScan);
  } catch (...) {
  }
  alloc::leave_internal();
  if (!held) return false;
  g_program_holder.store(self, std::memory_order_release);
  // A scan's signal this thread kept blocked until that scan gave up on it would outlive the exec.
  drop_pending_suspend_signal();
  return true;
}

void allow_scans_after_exec(bool held) noexcept {
  if (!held) return;
  g_program_holder.store(0, std::memory_order_release);
  state().scan_mutex.unlock();
}

static std::atomic<bool> g_fork_handlers_installed{false};

bool hold_scans_for_raw_fork() noexcept {
  if (!g_fork_handlers_installed.load(std::memory_order_acquire)) return false;
  wait_for_scans_before_fork();
  return true;
}

void allow_scans_after_raw_fork_in_parent(bool held) noexcept {
  if (held) allow_scans_after_fork_in_parent();
}

void install() {
  const alloc::Config& cfg = alloc::config();
  // Kernel roots are recorded in every mode (a scan may be asked for later, by the viewer too).
  alloc::add_fork_child_handler(kernel_roots_after_fork);
  report::add_dump_section(add_scan_to_dump);
  g_scanning_process.store(static_cast<pid_t>(alloc::raw_syscall(SYS_getpid)), std::memory_order_release);
  if (cfg.mode == alloc::CollectorMode::kOff) return;
  pthread_atfork(wait_for_scans_before_fork, allow_scans_after_fork_in_parent, nullptr);
  g_fork_handlers_installed.store(true, std::memory_order_release);
  alloc::add_exit_handler(exit_scan);
  alloc::add_fork_child_handler([] {
    // The child starts with no scanner thread, none of the parent's scan in progress, and its own
    // leak history; what the parent held in quarantine is an ordinary (leaked) block here.
    alloc::quarantine().forget_all();
    g_state.replace_in_child();
    g_scanning_process.store(static_cast<pid_t>(alloc::raw_syscall(SYS_getpid)), std::memory_order_release);
    g_program_holder.store(0, std::memory_order_release);
    t_nested_forks = 0;
    start_periodic_scanner(true);
  });
  start_periodic_scanner(false);
}

void install_exit_status() { alloc::add_exit_handler(exit_status); }

}  // namespace heapkeeper::collect
