// Implementation of the collector's lifecycle (see collector.h).
#include "collector/collector.h"

#include <pthread.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "allocator/block_header.h"
#include "allocator/block_map.h"
#include "allocator/config.h"
#include "allocator/diagnostics.h"
#include "allocator/engine.h"
#include "allocator/fork_replaceable.h"
#include "allocator/quarantine.h"
#include "allocator/stack_table.h"
#include "allocator/thread_registry.h"
#include "collector/kernel_roots.h"
#include "collector/program_caller.h"
#include "collector/reference_graph.h"
#include "collector/retained_analysis.h"
#include "collector/root_scan.h"
#include "collector/suppressions.h"
#include "report/exit_report.h"
#include "report/json_text.h"
#include "report/site_summary.h"
#include "report/symbolizer.h"

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
  std::mutex scan_mutex;     // one scan at a time (the periodic thread, the exit scan, commands)
  std::mutex results_mutex;  // `last` and `history`, read by the publisher without waiting for a scan
  uint64_t scans = 0;
  std::unordered_map<uintptr_t, KnownLeak> known;  // leaked blocks of the previous scan
  Suppressions suppressions;
  bool suppressions_loaded = false;
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
    alloc::DiagnosticLine().text(error).text("; no leaks are suppressed").emit();
  }
}

// The pattern suppressing a stack, if any frame's function, module or file matches one.
std::string suppression_for(CollectorState& s, uint32_t stack_id) {
  if (s.suppressions.empty()) return {};
  alloc::StackView view = alloc::stack_table().frames(stack_id);
  for (uint32_t i = 0; i < view.depth; ++i) {
    report::SymbolizedFrame frame = report::shared_symbolizer().resolve(view.frames[i], view.generation);
    for (const std::string* text : {&frame.function, &frame.module, &frame.file}) {
      if (const std::string* pattern = s.suppressions.match(*text)) return *pattern;
    }
  }
  return {};
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
  for (int i = 0; i < ReferenceSummary::kBuckets; ++i) report.reference_histogram[i] = result.references.histogram[i];
  for (const auto& top : result.references.most_referenced) {
    if (top.references == 0) break;
    const alloc::BlockHeader* header = alloc::block_map().header(top.region);
    report.most_referenced.push_back({header->size(), top.references, header->stack_id});
  }

  // Group by (kind, stack content); note which leaks are new since the previous scan.
  struct GroupKey {
    bool direct;
    uint64_t stack_hash;
    bool operator==(const GroupKey& o) const { return direct == o.direct && stack_hash == o.stack_hash; }
  };
  struct GroupKeyHash {
    size_t operator()(const GroupKey& k) const { return std::hash<uint64_t>()(k.stack_hash * 2 + k.direct); }
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
      if (leak.direct)
        --report.direct_blocks;
      else
        --report.indirect_blocks;
      continue;
    }
    uint64_t first_scan = report.number;
    auto previous = s.known.find(leak.region);
    if (previous != s.known.end() && previous->second.sequence == leak.sequence)
      first_scan = previous->second.first_scan;
    now_known[leak.region] = {leak.sequence, first_scan};
    GroupKey key{leak.direct != 0, alloc::stack_table().site_key(leak.stack_id)};
    LeakGroup& group = groups[key];
    group.direct = leak.direct != 0;
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
  for (auto& [key, group] : groups) {
    group.suppressed_by = suppression_for(s, group.stack_id);
    if (!group.suppressed_by.empty()) {
      report.suppressed_blocks += group.blocks;
      report.suppressed_bytes += group.bytes;
    }
    report.groups.push_back(std::move(group));
  }
  std::sort(report.groups.begin(), report.groups.end(), [](const LeakGroup& a, const LeakGroup& b) {
    if (a.direct != b.direct) return a.direct;
    return a.bytes != b.bytes ? a.bytes > b.bytes : a.blocks > b.blocks;
  });
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

nlohmann::json scan_json(const ScanReport& r) {
  const double seconds = static_cast<double>(r.mark_ns) / 1e9;
  const double marked = static_cast<double>(r.root_bytes + r.heap_bytes_marked);
  return {{"number", r.number},
          {"ok", r.ok},
          {"at_exit", r.at_exit},
          {"failure", report::json_text(r.failure)},
          {"stop_method", r.stop_method},
          {"pause_ms", static_cast<double>(r.pause_ns) / 1e6},
          {"mark_ms", static_cast<double>(r.mark_ns) / 1e6},
          {"threads_stopped", r.threads_stopped},
          {"root_ranges", r.root_ranges},
          {"roots_scanned_bytes", r.root_bytes},
          {"heap_bytes_marked", r.heap_bytes_marked},
          {"mark_throughput_gbps", seconds > 0 ? marked / seconds / 1e9 : 0.0},
          {"live_blocks", r.live_blocks},
          {"reachable_blocks", r.reachable_blocks},
          {"leaked_blocks", r.leaked_blocks},
          {"leaked_bytes", r.leaked_bytes},
          {"new_leaked_blocks", r.new_leaked_blocks},
          {"new_leaked_bytes", r.new_leaked_bytes},
          {"reclaimed_blocks", r.reclaimed_blocks},
          {"reclaimed_bytes", r.reclaimed_bytes},
          {"held_blocks", r.held_blocks},
          {"reclaimed_blocks_total", r.reclaimed_blocks_total},
          {"reclaimed_bytes_total", r.reclaimed_bytes_total}};
}

// What blocks and allocation sites retain (retained_analysis.h); "known": false when the scan
// recorded no reference graph (HEAPKEEPER_RETAINED=0, the text-only exit scan, no memory).
nlohmann::json retained_json(const ScanReport& r) {
  nlohmann::json retained = {{"known", r.retained_known}};
  if (!r.retained_known) return retained;
  retained["analysis_ms"] = static_cast<double>(r.retained_analysis_ns) / 1e6;
  retained["references"] = r.references_recorded;
  nlohmann::json sites = nlohmann::json::array();
  for (const ScanReport::RetainedSite& site : r.retained_sites) {
    sites.push_back({{"blocks", site.blocks},
                     {"bytes", site.bytes},
                     {"retained_bytes", site.retained_bytes},
                     {"stack", report::stack_to_json(report::shared_symbolizer(), site.stack_id)}});
  }
  retained["sites"] = std::move(sites);
  nlohmann::json blocks = nlohmann::json::array();
  for (const ScanReport::RetainedBlock& block : r.top_retainers) {
    char address[32];
    std::snprintf(address, sizeof(address), "0x%lx", static_cast<unsigned long>(block.address));
    blocks.push_back({{"address", address},
                      {"bytes", block.size},
                      {"retained_bytes", block.retained_bytes},
                      {"stack", report::stack_to_json(report::shared_symbolizer(), block.stack_id)}});
  }
  retained["top_blocks"] = std::move(blocks);
  return retained;
}

void add_leaks_to_report(nlohmann::json& doc) {
  CollectorState& s = state();
  const ScanReport r = last_scan();
  if (r.number == 0) return;
  uint64_t blocks = 0, bytes = 0;
  nlohmann::json leaks = nlohmann::json::array();
  for (const LeakGroup& g : r.groups) {
    if (!g.suppressed_by.empty()) continue;
    blocks += g.blocks;
    bytes += g.bytes;
    leaks.push_back({{"kind", g.direct ? "direct" : "indirect"},
                     {"blocks", g.blocks},
                     {"bytes", g.bytes},
                     {"new_blocks", g.new_blocks},
                     {"age_scans", g.max_age_scans},
                     {"stack", report::stack_to_json(report::shared_symbolizer(), g.stack_id)}});
  }
  doc["leaked_blocks"] = blocks;
  doc["leaked_bytes"] = bytes;
  doc["leaks"] = std::move(leaks);
  doc["suppressed_leaks"] = {{"blocks", r.suppressed_blocks}, {"bytes", r.suppressed_bytes}};
  doc["scan"] = scan_json(r);
  const char* bucket_names[] = {"1", "2", "3-4", "5-8", "9-16", "17+"};
  nlohmann::json histogram;
  for (int i = 0; i < 6; ++i) histogram[bucket_names[i]] = r.reference_histogram[i];
  doc["scan"]["reference_counts"] = std::move(histogram);
  nlohmann::json top = nlohmann::json::array();
  for (const ScanReport::Referenced& b : r.most_referenced) {
    top.push_back({{"references", b.references},
                   {"bytes", b.size},
                   {"stack", report::stack_to_json(report::shared_symbolizer(), b.stack_id)}});
  }
  doc["scan"]["most_referenced"] = std::move(top);
  doc["scan"]["retained"] = retained_json(r);
  doc["scans"] = s.scans;
  doc["collected"] = {{"blocks", s.reclaimed_blocks_total}, {"bytes", s.reclaimed_bytes_total}};
}

std::string format_frame_line(uint32_t index, uintptr_t address, uint32_t generation) {
  report::SymbolizedFrame frame = report::shared_symbolizer().resolve(address, generation);
  char prefix[48];
  std::snprintf(prefix, sizeof(prefix), "    #%u 0x%lx in ", index, static_cast<unsigned long>(address));
  return prefix + report::Symbolizer::format(frame) + "\n";
}

void exit_scan() {
  const alloc::Config& cfg = alloc::config();
  if (cfg.mode == alloc::CollectorMode::kOff) return;
  // Registers and stack of this (program) thread are roots: the program's, from the frame that
  // called heapkeeper's exit handler up, not heapkeeper's own frames below it (program_caller.h).
  // If that frame cannot be found, everything from here up, and this frame's registers.
  ucontext_t context;
  getcontext(&context);
  const ProgramCaller caller = find_program_caller();
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
    if (!report.ok) {
      alloc::DiagnosticLine().text("leak scan at exit skipped: ").text(report.failure).emit();
      return;
    }
    print_leak_report(report);
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
  if (!report.at_exit || report.leaked_blocks == report.suppressed_blocks) return;
  fflush(nullptr);  // we are the last exit handler: only stdio's own flush would have followed
  _exit(cfg.exit_code);
}

void periodic_scanner() {
  const uint64_t interval_ms = alloc::config().scan_interval_ms;
  for (;;) {
    timespec pause{static_cast<time_t>(interval_ms / 1000), static_cast<long>((interval_ms % 1000) * 1000000)};
    while (nanosleep(&pause, &pause) != 0) {
    }
    ScanReport report;
    try {
      report = scan_now(false, 0, nullptr, 0);
    } catch (const std::exception& error) {  // one failed scan; the next may succeed
      alloc::DiagnosticLine().text("periodic leak scan failed: ").text(error.what()).emit();
      continue;
    }
    if (state().exit_scan_done) return;
    if (!report.ok) {
      alloc::DiagnosticLine().text("periodic leak scan skipped: ").text(report.failure).emit();
      continue;
    }
    if (report.new_leaked_blocks > report.suppressed_blocks && !alloc::config().quiet) {
      alloc::DiagnosticLine()
          .text("scan ")
          .number(report.number)
          .text(": ")
          .number(report.new_leaked_blocks)
          .text(" new leaked blocks (")
          .bytes(report.new_leaked_bytes)
          .text("); ")
          .number(report.leaked_blocks)
          .text(" leaked in all (")
          .bytes(report.leaked_bytes)
          .text(")")
          .emit();
    }
  }
}

void start_periodic_scanner() {
  const alloc::Config& cfg = alloc::config();
  if (cfg.scan_interval_ms == 0 || cfg.mode == alloc::CollectorMode::kOff) return;
  if (!alloc::start_internal_thread(periodic_scanner, "heapkeeper-scan")) {
    alloc::DiagnosticLine().text("could not start the periodic leak scanner thread").emit();
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

namespace {
// Whether every block the program allocated has been freed (other threads may still allocate:
// at exit, as for any scan while they run, what they allocate after this is theirs).
bool nothing_live() {
  const alloc::ThreadTotals totals = alloc::thread_registry().totals();
  return totals.allocations == totals.frees;
}
}  // namespace

ScanReport scan_now(bool at_exit, uintptr_t caller_stack_pointer, const uint64_t* registers, size_t register_count,
                    bool reclaim_now, const std::function<void(ReferenceGraph&)>& inspect) {
  CollectorState& s = state();
  std::lock_guard<std::mutex> lock(s.scan_mutex);
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
    return report;
  }
  const std::unordered_map<uintptr_t, KnownLeak> previous = s.known;
  fill_report(s, result, report);
  if (marker.graph() != nullptr) analyse_retained(graph, report);
  if (inspect && graph.analysed()) inspect(graph);
  const bool hold_new = reclaim_now || alloc::config().mode == alloc::CollectorMode::kCollect;
  if ((hold_new || !s.held.empty()) && !at_exit) reclaim(s, result, report, previous, hold_new);
  s.reclaimed_blocks_total += report.reclaimed_blocks;
  s.reclaimed_bytes_total += report.reclaimed_bytes;
  report.reclaimed_blocks_total = s.reclaimed_blocks_total;
  report.reclaimed_bytes_total = s.reclaimed_bytes_total;
  ScanReport summary = report;
  summary.groups.clear();
  {
    std::lock_guard<std::mutex> results(s.results_mutex);
    s.last = report;
    if (s.history.size() == kHistory) s.history.erase(s.history.begin());
    s.history.push_back(std::move(summary));
  }
  if (at_exit) s.exit_scan_done = true;
  return report;
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

void print_leak_report(const ScanReport& report) {
  uint64_t blocks = 0, bytes = 0, groups = 0;
  for (const LeakGroup& g : report.groups) {
    if (!g.suppressed_by.empty()) continue;
    blocks += g.blocks;
    bytes += g.bytes;
    ++groups;
  }
  if (blocks == 0) return;
  const int pid = getpid();
  std::string text = "\n=================================================================\n";
  text += "==" + std::to_string(pid) + "==ERROR: heapkeeper: detected memory leaks\n";
  for (const LeakGroup& g : report.groups) {
    if (!g.suppressed_by.empty()) continue;
    text += "\n" + std::string(g.direct ? "Direct" : "Indirect") + " leak of " + std::to_string(g.bytes) +
            " byte(s) in " + std::to_string(g.blocks) + " object(s) allocated from:\n";
    alloc::StackView view = alloc::stack_table().frames(g.stack_id);
    for (uint32_t i = 0; i < view.depth; ++i) text += format_frame_line(i, view.frames[i], view.generation);
    if (view.depth == 0) text += "    (no stack recorded)\n";
  }
  if (report.suppressed_blocks > 0) {
    text += "\nSuppressed: " + std::to_string(report.suppressed_bytes) + " byte(s) in " +
            std::to_string(report.suppressed_blocks) + " object(s).\n";
  }
  text += "\nSUMMARY: heapkeeper: " + std::to_string(bytes) + " byte(s) leaked in " + std::to_string(blocks) +
          " allocation(s).\n";
  alloc::write_stderr(text.data(), text.size());
}

// A fork waits for a scan in progress to end. A scan holds the dynamic loader's lock from before
// it stops the world until after it resumes it, and a child forked meanwhile would inherit that
// lock held by a thread it does not have: its first dlopen (or its own scanner) would hang.
static void wait_for_scans_before_fork() {
  // Guarded: the first use of the collector's state allocates it, from heapkeeper's own arena.
  alloc::enter_internal();
  state().scan_mutex.lock();
  alloc::leave_internal();
}
static void allow_scans_after_fork_in_parent() { state().scan_mutex.unlock(); }
// (The child replaces the whole collector state, this mutex included: see fork_replaceable.h.)

void install() {
  const alloc::Config& cfg = alloc::config();
  // Kernel roots are recorded in every mode (a scan may be asked for later, by the viewer too).
  alloc::add_fork_child_handler(kernel_roots_after_fork);
  report::add_report_section(add_leaks_to_report);
  if (cfg.mode == alloc::CollectorMode::kOff) return;
  pthread_atfork(wait_for_scans_before_fork, allow_scans_after_fork_in_parent, nullptr);
  alloc::add_exit_handler(exit_scan);
  alloc::add_fork_child_handler([] {
    // The child starts with no scanner thread, none of the parent's scan in progress, and its own
    // leak history; what the parent held in quarantine is an ordinary (leaked) block here.
    alloc::quarantine().forget_all();
    g_state.replace_in_child();
    start_periodic_scanner();
  });
  start_periodic_scanner();
}

void install_exit_status() { alloc::add_exit_handler(exit_status); }

}  // namespace heapkeeper::collect
