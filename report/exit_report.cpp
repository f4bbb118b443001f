// Implementation of the report layer inside the traced process (see exit_report.h).
//
// Everything here runs with the guard held (its allocations land in heapkeeper's own arena), at
// exit, from heapkeeper_write_report, or on the publisher thread; nothing it throws may reach the
// program, so each entry point catches.
#include "report/exit_report.h"

#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <unordered_set>

#include "allocator/config.h"
#include "allocator/diagnostics.h"
#include "allocator/engine.h"
#include "allocator/heap_summary.h"
#include "allocator/stack_table.h"
#include "allocator/thread_registry.h"
#include "report/analysis_handoff.h"
#include "report/module_map.h"
#include "report/python_codes.h"
#include "report/read_file.h"
#include "report/report_file.h"
#include "report/site_summary.h"

namespace heapkeeper::report {
namespace {

const time_t g_started_at = std::time(nullptr);

constexpr int kMaxSections = 8;
DumpSection g_sections[kMaxSections] = {};
int g_section_count = 0;
ExitVerdict g_exit_verdict;

// Adds the frames of every stack the report refers to, each attributed to its module.
void add_stacks(RawReport& r) {
  std::unordered_set<uint32_t> wanted;
  for (const RawSite& s : r.live_sites) wanted.insert(s.stack_id);
  for (const RawThreadSite& s : r.thread_sites) wanted.insert(s.stack_id);
  for (const RawLeakGroup& g : r.scan.groups) wanted.insert(g.stack_id);
  for (const RawReferenced& m : r.scan.most_referenced) wanted.insert(m.stack_id);
  for (const RawScan::RetainedSite& site : r.scan.retained_sites) wanted.insert(site.stack_id);
  for (const RawScan::RetainedBlock& block : r.scan.top_retainers) wanted.insert(block.stack_id);
  // No stack, no module: most short processes (a shell's /bin/true) end with nothing live and no
  // leak, and their report is then built without reading /proc/self/maps at all.
  if (wanted.empty()) return;
  ModuleMap modules;
  modules.load();
  for (uint32_t id : wanted) {
    const alloc::StackView view = alloc::stack_table().frames(id);
    RawStack stack;
    stack.id = id;
    stack.frames.reserve(view.depth);
    for (uint32_t i = 0; i < view.depth; ++i)
      stack.frames.push_back({view.frames[i], modules.attribute(view.frames[i], view.generation, r.modules)});
    r.stacks.push_back(std::move(stack));
  }
  add_python_codes(r.stacks, r.python_codes);
}

// A profile's sites: the live ones split by allocating thread, and what those threads were.
void add_thread_sites(RawReport& r) {
  const std::vector<ThreadSiteTotals> sites = live_sites_by_thread();
  // The names live threads have now (exited ones kept their last, thread_registry.h).
  alloc::thread_registry().for_each_active([](const alloc::ThreadState& s) {
    if (!s.heapkeeper_thread) alloc::thread_registry().refresh_name(s);
  });
  std::unordered_set<uint32_t> threads;
  for (size_t i = 0; i < sites.size() && i < kProfileLiveSites; ++i) {
    r.thread_sites.push_back({sites[i].stack_id, sites[i].thread, sites[i].blocks, sites[i].bytes});
    if (!threads.insert(sites[i].thread).second) continue;
    RawThread thread;
    thread.thread = sites[i].thread;
    if (const alloc::ThreadInfo* info = alloc::thread_registry().info(sites[i].thread)) {
      thread.tid = info->tid;
      thread.name.assign(info->name, strnlen(info->name, sizeof(info->name)));
    }
    r.threads.push_back(std::move(thread));
  }
}

RawReport build_raw_report(uint32_t flags) {
  const alloc::HeapSummary s = alloc::summarize_heap();
  const alloc::Config& cfg = alloc::config();
  RawReport r;
  r.flags = flags;
  r.pid = ::getpid();
  r.started_at = static_cast<int64_t>(g_started_at);
  r.written_at = static_cast<int64_t>(std::time(nullptr));
  char exe[4096];
  const ssize_t n = ::readlink("/proc/thread-self/exe", exe, sizeof(exe) - 1);
  r.program = n > 0 ? std::string(exe, static_cast<size_t>(n)) : std::string("?");
  r.command_line = read_whole_file("/proc/thread-self/cmdline");
  r.live_bytes = s.live_bytes;
  r.live_blocks = s.live_blocks;
  r.peak_live_bytes = s.peak_live_bytes;
  r.allocations = s.total_allocations;
  r.frees = s.total_frees;
  r.foreign_frees = s.foreign_frees;
  r.bad_frees = s.bad_frees;
  r.distinct_stacks = s.distinct_stacks;
  r.threads_seen = s.threads_seen;
  r.heap_reserved = s.heap.reserve_bytes;
  r.heap_mapped = s.heap.mapped_bytes;
  r.heap_resident = s.heap.resident_bytes;
  r.heap_returned = s.heap.returned_bytes;
  r.heap_active = s.heap.active_bytes;
  r.heap_internal_mapped = s.heap.internal_mapped_bytes;
  r.stack_depth = static_cast<uint32_t>(cfg.stack_depth);
  r.free_stacks = cfg.free_stacks;
  r.mode = static_cast<uint8_t>(cfg.mode);
  r.on_bad_free = cfg.on_bad_free == alloc::BadFreePolicy::kAbort ? 0 : 1;
  r.scan_interval_ms = cfg.scan_interval_ms;
  r.baseline_path = cfg.baseline_path;
  // Where the memory still allocated now comes from (at exit: what the program never freed,
  // reachable or not; the collector's leak list says which of it is unreachable).
  // Nothing live (every block freed, or none ever allocated: most short processes) has no sites,
  // and reading the live bitmap to find none cost a process that allocated nothing five page
  // faults and 45,000 instructions at exit.
  const std::vector<SiteTotals> sites = s.live_blocks != 0 ? live_sites() : std::vector<SiteTotals>();
  r.live_site_count = sites.size();
  for (size_t i = 0; i < sites.size() && i < kReportLiveSites; ++i)
    r.live_sites.push_back({sites[i].stack_id, sites[i].blocks, sites[i].bytes});
  if (flags & kWantProfile) add_thread_sites(r);
  for (int i = 0; i < g_section_count; ++i) g_sections[i](r);
  add_stacks(r);
  return r;
}

// A frame as the fallback prints it: "?? module+0xoffset (BuildId: hex)", or "?? 0x<address>".
std::string unsymbolized_frame(const RawReport& r, const RawFrame& f) {
  char number[64];
  if (f.module == kNoModule) {
    std::snprintf(number, sizeof number, "?? ?? 0x%" PRIx64, f.address);
    return number;
  }
  const RawModule& m = r.modules[f.module];
  std::snprintf(number, sizeof number, "+0x%" PRIx64, f.address - m.load_bias);
  std::string text = "?? " + m.path + number;
  if (!m.build_id.empty()) {
    text += " (BuildId: ";
    for (unsigned char c : m.build_id) {
      std::snprintf(number, sizeof number, "%02x", c);
      text += number;
    }
    text += ")";
  }
  return m.unloaded ? text + " (unloaded)" : text;
}

// Without the binary: the leak report with module+offset frames (and build-ids), as LeakSanitizer
// prints without a symbolizer; suppressions, which match names, cannot be applied.
std::string unsymbolized_leak_text(const RawReport& r) {
  uint64_t blocks = 0, bytes = 0;
  for (const RawLeakGroup& g : r.scan.groups) {
    blocks += g.blocks;
    bytes += g.bytes;
  }
  std::string text = "\n=================================================================\n";
  text += "==" + std::to_string(r.pid) + "==ERROR: heapkeeper: detected memory leaks\n";
  for (const RawLeakGroup& g : r.scan.groups) {
    text += "\n" + std::string(leak_kind_title(g.kind)) + " leak of " + std::to_string(g.bytes) + " byte(s) in " +
            std::to_string(g.blocks) + " object(s) allocated from:\n";
    const RawStack* stack = r.stack(g.stack_id);
    const size_t depth = stack != nullptr ? stack->frames.size() : 0;
    for (size_t i = 0; i < depth; ++i) {
      char prefix[64];
      std::snprintf(prefix, sizeof prefix, "    #%zu 0x%" PRIx64 " in ", i, stack->frames[i].address);
      text += prefix + unsymbolized_frame(r, stack->frames[i]) + "\n";
    }
    if (depth == 0) text += "    (no stack recorded)\n";
  }
  text += "\nSUMMARY: heapkeeper: " + std::to_string(bytes) + " byte(s) leaked in " + std::to_string(blocks) +
          " allocation(s).\n";
  return text;
}

void print_stack_unguarded(uint32_t stack_id, const char* title) {
  alloc::DiagnosticLine().text("  ").text(title).emit();
  const alloc::StackView view = alloc::stack_table().frames(stack_id);
  if (view.depth == 0) {
    alloc::DiagnosticLine().text("    (no stack recorded)").emit();
    return;
  }
  RawReport r;
  r.flags = kWantFrames;
  r.pid = ::getpid();
  ModuleMap modules;
  modules.load();
  RawStack stack;
  stack.id = stack_id;
  for (uint32_t i = 0; i < view.depth; ++i)
    stack.frames.push_back({view.frames[i], modules.attribute(view.frames[i], view.generation, r.modules)});
  r.stacks.push_back(std::move(stack));
  add_python_codes(r.stacks, r.python_codes);
  RawAnswer answer;
  std::string why;
  const bool named = analyse_dump(serialize_raw_dump(r), answer, why);
  size_t at = 0;
  for (uint32_t i = 0; i < view.depth; ++i) {
    std::string text;
    if (named) {
      const size_t end = answer.leak_text.find('\n', at);
      if (end == std::string::npos) break;
      text = answer.leak_text.substr(at, end - at);
      at = end + 1;
    } else {
      text = unsymbolized_frame(r, r.stacks[0].frames[i]);
    }
    alloc::DiagnosticLine().text("    #").number(i).text(" ").text(text).emit();
  }
}

// Called from inside the program's free() (a bad-free report): the hand-off allocates and may
// throw, and nothing may cross into free's caller.
void print_stack(uint32_t stack_id, const char* title) {
  try {
    print_stack_unguarded(stack_id, title);
  } catch (const std::exception& error) {
    alloc::DiagnosticLine().text("    (stack not printed: ").text(error.what()).text(")").emit();
  } catch (...) {
    alloc::DiagnosticLine().text("    (stack not printed)").emit();
  }
}

bool leaks_at_exit(const RawReport& r) {
  return r.scan.present && r.scan.at_exit && r.scan.ok && !r.scan.groups.empty();
}

// Writes `contents` (`what`: "report", "profile") to `path`. Every failure gets one line when
// `line_for_every_failure` (at exit: nobody else will say it); otherwise (heapkeeper_write_report,
// whose caller gets errno) only heapkeeper's own decisions do, which errno alone would not
// explain: a refusal, a FIFO without a reader.
int write_output(const char* path, const std::string& contents, const char* what, bool line_for_every_failure) {
  alloc::OutputProblem problem;
  if (write_report_text(path, contents, problem) == 0) return 0;
  if (line_for_every_failure || problem.reason != nullptr) {
    alloc::DiagnosticLine line;
    line.text("could not write the ").text(what).text(" to ").path(path).text(": ");
    alloc::describe_output_problem(line, problem);
    line.emit();
  }
  errno = problem.error;
  return -1;
}

bool expand_report_path(const char* pattern, char (&path)[4096], bool say_so) {
  if (alloc::expand_pid_pattern(pattern, ::getpid(), path, sizeof(path))) return true;
  if (say_so) alloc::DiagnosticLine().text("report path too long: ").text(pattern).emit();
  errno = ENAMETOOLONG;
  return false;
}

void report_at_exit_unguarded() {
  const alloc::Config& cfg = alloc::config();
  const bool json_wanted = cfg.report_path[0] != '\0';
  const bool profile_wanted = cfg.pprof_path[0] != '\0';
  char path[4096], profile_path[4096];
  if (json_wanted && !expand_report_path(cfg.report_path, path, true)) return;
  if (profile_wanted && !expand_report_path(cfg.pprof_path, profile_path, true)) return;
  // Whether there is anything to say comes from the sections alone (the exit scan's outcome); the
  // rest of the report (heap figures, /proc reads, the module map, live sites and their stacks) is
  // built only when it will be used. Nothing to say and nothing to write is most processes of a
  // build: they leave without waking the binary or reading /proc.
  RawReport outcome;
  for (int i = 0; i < g_section_count; ++i) g_sections[i](outcome);
  const bool text_wanted = leaks_at_exit(outcome);
  g_exit_verdict.unsuppressed_leaks = text_wanted;
  if (!text_wanted && !json_wanted && !profile_wanted) return;
  RawReport raw = build_raw_report(profile_wanted ? uint32_t{kWantProfile} : 0u);
  raw.flags |= (text_wanted ? uint32_t{kWantLeakText} : 0u) | (json_wanted ? uint32_t{kWantJson} : 0u);
  RawAnswer answer;
  std::string why;
  if (!analyse_dump(serialize_raw_dump(raw), answer, why)) {
    if (text_wanted) {
      alloc::DiagnosticLine().text(why).text("; frames are given as module+offset").emit();
      const std::string text = unsymbolized_leak_text(raw);
      alloc::write_stderr(text.data(), text.size());
    }
    if (json_wanted)
      alloc::DiagnosticLine().text("could not write the report to ").path(path).text(": ").text(why).emit();
    if (profile_wanted)
      alloc::DiagnosticLine().text("could not write the profile to ").text(profile_path).text(": ").text(why).emit();
    return;
  }
  g_exit_verdict.analysed = true;
  g_exit_verdict.unsuppressed_leaks = answer.unsuppressed_leaks;
  if (!answer.leak_text.empty()) alloc::write_stderr(answer.leak_text.data(), answer.leak_text.size());
  if (json_wanted) write_output(path, answer.json, "report", true);
  // The profile goes where reports go, by the same rules (report_file.h); the binary gzipped it,
  // so the program never links zlib.
  if (profile_wanted) write_output(profile_path, answer.profile, "profile", true);
}

// The exit handler: the program is inside exit(), so whatever building, handing over or writing
// throws (bad_alloc under a tight ulimit, say) ends here as one line.
void report_at_exit() {
  try {
    report_at_exit_unguarded();
  } catch (const std::exception& error) {
    alloc::DiagnosticLine().text("the report at exit failed: ").text(error.what()).emit();
  } catch (...) {
    alloc::DiagnosticLine().text("the report at exit failed").emit();
  }
}

}  // namespace

void add_dump_section(DumpSection section) {
  if (g_section_count < kMaxSections) g_sections[g_section_count++] = section;
}

void install() {
  locate_analysis_binary();
  alloc::set_stack_printer(print_stack);
  alloc::add_exit_handler(report_at_exit);
  alloc::add_fork_child_handler([] { g_exit_verdict = ExitVerdict{}; });
}

bool find_suppressed_stacks(const std::vector<uint32_t>& stack_ids, const std::vector<std::string>& patterns,
                            std::vector<RawAnswer::Suppressed>& suppressed, std::string& why) {
  // A dump of just what the verdicts need: the patterns, one group per stack, the stacks' frames
  // and their modules. No flags: no text, no JSON, only the answer's verdicts.
  RawReport r;
  r.pid = ::getpid();
  r.suppressions = patterns;
  r.scan.present = true;
  r.scan.ok = true;
  for (uint32_t id : stack_ids) r.scan.groups.push_back({LeakKind::kDirect, id, 1, 0, 0, 0, 0});
  add_stacks(r);
  RawAnswer answer;
  if (!analyse_dump(serialize_raw_dump(r), answer, why)) return false;
  suppressed = std::move(answer.suppressed);
  return true;
}

std::string build_raw_dump(uint32_t flags) { return serialize_raw_dump(build_raw_report(flags)); }

ExitVerdict exit_verdict() { return g_exit_verdict; }

int write_report_file(const char* pattern) {
  char path[4096];
  if (!expand_report_path(pattern, path, false)) return -1;
  try {
    RawAnswer answer;
    std::string why;
    if (!analyse_dump(build_raw_dump(kWantJson), answer, why)) {
      alloc::DiagnosticLine().text("could not write the report to ").path(path).text(": ").text(why).emit();
      errno = ENOENT;
      return -1;
    }
    return write_output(path, answer.json, "report", false);
  } catch (const std::bad_alloc&) {
    errno = ENOMEM;
  } catch (const std::exception& error) {
    alloc::DiagnosticLine().text("building the report failed: ").text(error.what()).emit();
    errno = EIO;
  } catch (...) {
    errno = EIO;
  }
  return -1;
}

}  // namespace heapkeeper::report
