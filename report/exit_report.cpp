// Implementation of the JSON report and the report layer's hooks (see exit_report.h).
//
// JSON is built with nlohmann::json (Debian's nlohmann-json3-dev): a well-kept, header-only
// library, so the document is correct by construction (escaping, numbers) instead of hand-built.
// It allocates through operator new, which is fine: everything here runs with the guard held, so
// those allocations land in the internal arena.
#include "report/exit_report.h"

#include "report/read_file.h"
#include "report/report_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>

#include "allocator/config.h"
#include "allocator/diagnostics.h"
#include "allocator/engine.h"
#include "allocator/fork_replaceable.h"
#include "allocator/heap_summary.h"
#include "allocator/stack_table.h"
#include "report/json_text.h"
#include "report/site_summary.h"
#include "report/symbolizer.h"

namespace heapkeeper::report {
namespace {

const time_t g_started_at = std::time(nullptr);

Symbolizer& symbolizer() { return shared_symbolizer(); }

constexpr int kMaxSections = 8;
ReportSection g_sections[kMaxSections] = {};
int g_section_count = 0;

int write_report(const char* pattern, bool line_for_every_failure);

std::string read_file(const char* path) { return read_whole_file(path); }

nlohmann::json command_line() {
  nlohmann::json args = nlohmann::json::array();
  std::string raw = read_file("/proc/thread-self/cmdline");
  size_t start = 0;
  while (start < raw.size()) {
    size_t end = raw.find('\0', start);
    if (end == std::string::npos) end = raw.size();
    args.push_back(json_text(std::string_view(raw).substr(start, end - start)));
    start = end + 1;
  }
  return args;
}

std::string program_path() {
  char buffer[4096];
  ssize_t n = ::readlink("/proc/thread-self/exe", buffer, sizeof(buffer) - 1);
  return n > 0 ? json_text(std::string_view(buffer, static_cast<size_t>(n))) : std::string("?");
}

const char* mode_name(alloc::CollectorMode mode) {
  switch (mode) {
    case alloc::CollectorMode::kOff:
      return "off";
    case alloc::CollectorMode::kDetect:
      return "detect";
    case alloc::CollectorMode::kCollect:
      return "collect";
  }
  return "?";
}

void print_symbolized_stack_unguarded(uint32_t stack_id, const char* title) {
  alloc::DiagnosticLine().text("  ").text(title).emit();
  alloc::StackView view = alloc::stack_table().frames(stack_id);
  if (view.depth == 0) {
    alloc::DiagnosticLine().text("    (no stack recorded)").emit();
    return;
  }
  for (uint32_t i = 0; i < view.depth; ++i) {
    SymbolizedFrame frame = symbolizer().resolve(view.frames[i], view.generation);
    std::string text = Symbolizer::format(frame);
    alloc::DiagnosticLine().text("    #").number(i).text(" ").text(text).emit();
  }
}

// Called from inside the program's free() (a bad-free report): symbolizing allocates and may throw,
// and nothing may cross into free's caller.
void print_symbolized_stack(uint32_t stack_id, const char* title) {
  try {
    print_symbolized_stack_unguarded(stack_id, title);
  } catch (const std::exception& error) {
    alloc::DiagnosticLine().text("    (stack not symbolized: ").text(error.what()).text(")").emit();
  } catch (...) {
    alloc::DiagnosticLine().text("    (stack not symbolized)").emit();
  }
}

void write_report_at_exit() {
  const alloc::Config& cfg = alloc::config();
  if (cfg.report_path[0] == '\0') return;
  write_report(cfg.report_path, true);
}

}  // namespace

alloc::ForkReplaceable<Symbolizer> g_shared_symbolizer;  // see fork_replaceable.h

Symbolizer& shared_symbolizer() { return g_shared_symbolizer.get(); }

void add_report_section(ReportSection section) {
  if (g_section_count < kMaxSections) g_sections[g_section_count++] = section;
}

void install() {
  alloc::set_stack_printer(print_symbolized_stack);
  alloc::add_exit_handler(write_report_at_exit);
  alloc::add_fork_child_handler([] { g_shared_symbolizer.replace_in_child(); });
}

std::string build_report_json() {
  const alloc::HeapSummary s = alloc::summarize_heap();
  const alloc::Config& cfg = alloc::config();
  nlohmann::json doc;
  doc["schema_version"] = 1;
  doc["tool"] = "heapkeeper";
  doc["tool_version"] = "0.1.0";
  doc["pid"] = ::getpid();
  doc["program"] = program_path();
  doc["command_line"] = command_line();
  doc["started_at"] = static_cast<int64_t>(g_started_at);
  doc["written_at"] = static_cast<int64_t>(std::time(nullptr));
  doc["live_bytes"] = s.live_bytes;
  doc["live_blocks"] = s.live_blocks;
  doc["peak_live_bytes"] = s.peak_live_bytes;
  doc["allocations"] = s.total_allocations;
  doc["frees"] = s.total_frees;
  doc["foreign_frees"] = s.foreign_frees;
  doc["bad_frees"] = s.bad_frees;
  doc["distinct_stacks"] = s.distinct_stacks;
  doc["threads_seen"] = s.threads_seen;
  doc["heap"] = {
      {"reserved_bytes", s.heap.reserve_bytes},  {"mapped_bytes", s.heap.mapped_bytes},
      {"resident_bytes", s.heap.resident_bytes}, {"returned_bytes", s.heap.returned_bytes},
      {"active_bytes", s.heap.active_bytes},     {"internal_mapped_bytes", s.heap.internal_mapped_bytes},
  };
  doc["config"] = {
      {"stack_depth", cfg.stack_depth},
      {"free_stacks", cfg.free_stacks},
      {"mode", mode_name(cfg.mode)},
      {"scan_interval_ms", cfg.scan_interval_ms},
      {"on_bad_free", cfg.on_bad_free == alloc::BadFreePolicy::kAbort ? "abort" : "continue"},
  };
  // Where the memory still allocated now comes from (at exit: what the program never freed,
  // reachable or not; the collector's leak list says which of it is unreachable).
  constexpr size_t kLiveSitesShown = 20;
  std::vector<SiteTotals> sites = live_sites();
  nlohmann::json live = nlohmann::json::array();
  for (size_t i = 0; i < sites.size() && i < kLiveSitesShown; ++i) {
    live.push_back({{"blocks", sites[i].blocks},
                    {"bytes", sites[i].bytes},
                    {"stack", stack_to_json(symbolizer(), sites[i].stack_id)}});
  }
  doc["live_sites"] = std::move(live);
  doc["live_site_count"] = sites.size();
  for (int i = 0; i < g_section_count; ++i) g_sections[i](doc);
  // Every string above went through json_text, so dump cannot meet invalid UTF-8; should one ever
  // slip through, it is replaced (U+FFFD) rather than thrown as type_error 316 into the program.
  return doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

int write_report_file(const char* pattern) { return write_report(pattern, false); }

namespace {

// Expands '%p', builds the report and writes it (report_file.h). Every failure gets one line when
// `line_for_every_failure` (at exit: nobody else will say it); otherwise (heapkeeper_write_report,
// whose caller gets errno) only heapkeeper's own decisions do, which errno alone would not
// explain: a refusal, a FIFO without a reader.
int write_report(const char* pattern, bool line_for_every_failure) {
  char path[4096];
  if (!alloc::expand_pid_pattern(pattern, ::getpid(), path, sizeof(path))) {
    if (line_for_every_failure) alloc::DiagnosticLine().text("report path too long: ").text(pattern).emit();
    errno = ENAMETOOLONG;
    return -1;
  }
  // The boundary for everything that builds the report (symbolizing, JSON, strings): nothing it
  // throws may reach the program, which called exit() or heapkeeper_write_report.
  alloc::OutputProblem problem;
  try {
    const std::string json = build_report_json();
    if (write_report_text(path, json, problem) == 0) return 0;
  } catch (const std::bad_alloc&) {
    problem = alloc::OutputProblem{};
    problem.error = ENOMEM;
  } catch (const std::exception& error) {
    alloc::DiagnosticLine().text("building the report failed: ").text(error.what()).emit();
    errno = EIO;
    return -1;
  } catch (...) {
    problem = alloc::OutputProblem{};
    problem.error = EIO;
  }
  if (line_for_every_failure || problem.reason != nullptr) {
    alloc::DiagnosticLine line;
    line.text("could not write the report to ").text(path).text(": ");
    alloc::describe_output_problem(line, problem);
    line.emit();
  }
  errno = problem.error;
  return -1;
}

}  // namespace

}  // namespace heapkeeper::report
