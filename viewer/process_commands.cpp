// Implementation of the process commands (see process_commands.h).
//
// Machine-readable output is JSON (nlohmann::json) with the same field names as the snapshot
// layout, and Prometheus/OpenMetrics text for `export`, so fleets can scrape heapkeeper's figures
// (node_exporter's textfile collector) instead of building an aggregator.
#include "viewer/process_commands.h"

#include <fmt/core.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "report/json_text.h"
#include "viewer/report_document.h"
#include "viewer/rss_breakdown.h"
#include "viewer/segment_reader.h"
#include "viewer/show_command.h"
#include "viewer/view_format.h"

namespace heapkeeper::view {
namespace {

std::string uptime_text(uint64_t ns) {
  uint64_t s = ns / 1000000000ull;
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60);
}

// Bytes from the segment (argv, paths, symbols) as a terminal may show them: invalid UTF-8 and
// control characters as \xNN.
std::string printable(std::string_view raw) { return report::printable_json_text(report::json_text(raw)); }

std::string frame_text(const stats::Frame& f) {
  if (f.module_index == stats::kPythonFrameIndex)  // "app.py:12 in make_list [py]"
    return fmt::format("{}:{} in {} [py]", printable(f.file[0] ? f.file : "??"), f.line,
                       printable(f.function[0] ? f.function : "??"));
  std::string text = fmt::format("{} in {}+{:#x}", printable(f.function[0] ? f.function : "??"),
                                 printable(f.module[0] ? f.module : "??"), f.module_offset);
  if (f.file[0] != '\0') text += fmt::format(" {}:{}", printable(f.file), f.line);
  return text;
}

// A site in one line: its first frame, or under Python its innermost Python frame (the frames
// before it are the interpreter's allocator).
std::string site_text(const stats::Site& site) {
  for (uint32_t i = 0; i < site.depth && i < stats::kMaxFrames; ++i)
    if (site.frames[i].module_index == stats::kPythonFrameIndex) return frame_text(site.frames[i]);
  return site.depth > 0 ? frame_text(site.frames[0]) : "(no stack)";
}

nlohmann::json frames_json(const stats::Frame* frames, uint32_t depth) {
  nlohmann::json out = nlohmann::json::array();
  for (uint32_t i = 0; i < depth; ++i) {
    nlohmann::json f = {{"address", frames[i].address},
                        {"function", report::json_text(frames[i].function)},
                        {"module", report::json_text(frames[i].module)},
                        {"offset", frames[i].module_offset}};
    if (frames[i].file[0] != '\0') {
      f["file"] = report::json_text(frames[i].file);
      f["line"] = frames[i].line;
    }
    if (frames[i].module_index == stats::kPythonFrameIndex) f["language"] = "python";
    out.push_back(std::move(f));
  }
  return out;
}

// How long ago the snapshot was published.
uint64_t age_ns(const stats::Snapshot& s) {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  const uint64_t now_ns = static_cast<uint64_t>(now.tv_sec) * 1000000000ull + static_cast<uint64_t>(now.tv_nsec);
  return now_ns > s.time_ns ? now_ns - s.time_ns : 0;
}

uint64_t last_leaked_bytes(const stats::Snapshot& s) {
  return s.scan_count == 0 ? 0 : s.scans[s.scan_count - 1].leaked_bytes;
}

nlohmann::json snapshot_json(const SegmentInfo& info, const stats::Snapshot& s) {
  nlohmann::json doc;
  doc["pid"] = info.pid;
  doc["program"] = report::json_text(info.program);
  doc["command_line"] = report::json_text(info.command_line);
  doc["running"] = info.producer_alive;
  doc["state"] = info.state_name();
  doc["snapshot_age_seconds"] = static_cast<double>(age_ns(s)) / 1e9;
  doc["uptime_seconds"] = static_cast<double>(s.uptime_ns) / 1e9;
  doc["live_bytes"] = s.live_bytes;
  doc["live_blocks"] = s.live_blocks;
  doc["peak_live_bytes"] = s.peak_live_bytes;
  doc["allocations"] = s.total_allocations;
  doc["frees"] = s.total_frees;
  doc["allocation_rate"] = s.allocation_rate;
  doc["free_rate"] = s.free_rate;
  doc["heap"] = {{"reserved_bytes", s.heap_reserved_bytes},
                 {"mapped_bytes", s.heap_mapped_bytes},
                 {"resident_bytes", s.heap_resident_bytes},
                 {"returned_bytes", s.heap_returned_bytes},
                 {"active_bytes", s.heap_active_bytes}};
  doc["foreign_frees"] = s.foreign_frees;
  doc["bad_frees"] = s.bad_frees;
  doc["distinct_stacks"] = s.distinct_stacks;
  doc["threads_seen"] = s.threads_seen;
  nlohmann::json histogram = nlohmann::json::array();
  for (uint32_t i = 0; i < stats::kSizeClasses; ++i) {
    if (s.size_class_blocks[i] == 0) continue;
    histogram.push_back(
        {{"min_size", uint64_t{1} << i}, {"blocks", s.size_class_blocks[i]}, {"bytes", s.size_class_bytes[i]}});
  }
  doc["size_classes"] = std::move(histogram);
  nlohmann::json sites = nlohmann::json::array();
  for (uint32_t i = 0; i < s.site_count; ++i) {
    const stats::Site& site = s.sites[i];
    nlohmann::json entry = {
        {"live_bytes", site.live_bytes},     {"live_blocks", site.live_blocks},
        {"allocations", site.allocations},   {"allocation_rate", site.allocation_rate},
        {"leaked_bytes", site.leaked_bytes}, {"leaked_blocks", site.leaked_blocks},
        {"growing", site.growing != 0},      {"growth_bytes_per_second", site.growth_bytes_per_second},
        {"retained_bytes", nullptr},         {"stack", frames_json(site.frames, site.depth)}};
    if (site.retained_known != 0) entry["retained_bytes"] = site.retained_bytes;
    sites.push_back(std::move(entry));
  }
  doc["sites"] = std::move(sites);
  doc["site_count"] = s.total_site_count;
  nlohmann::json threads = nlohmann::json::array();
  for (uint32_t i = 0; i < s.thread_count; ++i) {
    const stats::ThreadFigures& t = s.threads[i];
    threads.push_back({{"tid", t.tid},
                       {"index", t.index},
                       {"name", report::json_text(t.name)},
                       {"net_bytes", t.net_bytes},
                       {"allocations", t.allocations},
                       {"frees", t.frees}});
  }
  doc["threads"] = std::move(threads);
  nlohmann::json scans = nlohmann::json::array();
  for (uint32_t i = 0; i < s.scan_count; ++i) {
    const stats::ScanFigures& f = s.scans[i];
    scans.push_back({{"number", f.number},
                     {"time_ns", f.time_ns},
                     {"pause_ms", f.pause_ms},
                     {"ok", f.ok != 0},
                     {"reachable_blocks", f.reachable_blocks},
                     {"leaked_blocks", f.leaked_blocks},
                     {"leaked_bytes", f.leaked_bytes},
                     {"new_leaked_blocks", f.new_leaked_blocks},
                     {"reclaimed_blocks", f.reclaimed_blocks},
                     {"reclaimed_bytes", f.reclaimed_bytes}});
  }
  doc["scans"] = std::move(scans);
  nlohmann::json leaks = nlohmann::json::array();
  for (uint32_t i = 0; i < s.leak_count; ++i) {
    const stats::Leak& l = s.leaks[i];
    leaks.push_back({{"kind", leak_kind_text(l.kind)},
                     {"blocks", l.blocks},
                     {"bytes", l.bytes},
                     {"new_blocks", l.new_blocks},
                     {"age_scans", l.age_scans},
                     {"stack", frames_json(l.frames, l.depth)}});
  }
  doc["leaks"] = std::move(leaks);
  nlohmann::json series = nlohmann::json::array();
  for (uint32_t i = 0; i < s.series_count; ++i) {
    const stats::SeriesPoint& p =
        s.series[(s.series_next + stats::kSeriesLength - s.series_count + i) % stats::kSeriesLength];
    series.push_back({p.time_ns, p.live_bytes, p.leaked_bytes});
  }
  doc["series"] = std::move(series);
  return doc;
}

bool open_snapshot(pid_t pid, SegmentReader& reader, stats::Snapshot& snapshot, bool for_commands) {
  std::string error;
  if (!reader.open(pid, for_commands, error) || !reader.snapshot(snapshot, error)) {
    fmt::print(stderr, "heapkeeper: {}\n", error);
    return false;
  }
  return true;
}

// One line of `list`: a segment file and what it says.
// The executable and, as `view` shows them, its arguments: the executable alone does not say which
// process it is when it was started through a link (Debian's redis-server is redis-check-rdb, `ps`
// shows "redis-server *:6379"), or for interpreters, whose scripts are in the arguments.
std::string program_text(const std::string& program, const std::string& command_line) {
  if (command_line.empty()) return printable(program);
  return printable(program) + "  [" + printable(command_line) + "]";
}

struct ProcessRow {
  pid_t pid = 0;
  std::string state, path, program, command_line, error;
  bool readable = false, running = false, have_figures = false;
  uint64_t uptime_ns = 0, live_bytes = 0, leaked_bytes = 0;
};

// Every segment file of /dev/shm as a row; with `clean`, the remains of dead processes of our pid
// namespace with no heartbeat for 10 s are removed (a process in another namespace sharing
// /dev/shm keeps its segment).
template <typename Visit>
void for_each_process(bool clean, Visit visit) {
  auto snapshot = std::make_unique<stats::Snapshot>();
  for (const SegmentFile& file : SegmentReader::list_files()) {
    ProcessRow row;
    row.pid = file.pid;
    row.path = file.path;
    SegmentReader reader;
    if (!reader.open_file(file, false, row.error)) {
      row.state = clean && SegmentReader::remove_if_remains(file) ? "removed" : "unreadable";
      visit(row);
      continue;
    }
    const SegmentInfo info = reader.info();
    std::string error;
    row.readable = true;
    row.have_figures = reader.snapshot(*snapshot, error, /*figures_only=*/true);
    row.state = info.state_name();
    if (!info.producer_alive && clean && SegmentReader::remove_if_remains(file)) row.state = "removed";
    row.running = info.producer_alive;
    row.program = info.program;
    row.command_line = info.command_line;
    if (row.have_figures) {
      row.uptime_ns = snapshot->uptime_ns;
      row.live_bytes = snapshot->live_bytes;
      row.leaked_bytes = last_leaked_bytes(*snapshot);
    }
    visit(row);
  }
}

}  // namespace

// A stopped process (SIGSTOP, or stopped by a debugger) cannot answer until it is continued.
bool refuse_if_stopped(const SegmentReader& reader, pid_t pid, const char* what) {
  const SegmentInfo info = reader.info();
  if (!info.stopped()) return false;
  fmt::print(stderr, "heapkeeper: cannot {} pid {}: the process is {} (continue it with kill -CONT {})\n", what, pid,
             info.state_name(), pid);
  return true;
}

std::string human_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < 5) {
    value /= 1024;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", value, units[unit]);
}

std::string process_list_json(bool clean) {
  nlohmann::json rows = nlohmann::json::array();
  for_each_process(clean, [&](const ProcessRow& row) {
    if (!row.readable)
      rows.push_back({{"pid", row.pid},
                      {"state", row.state},
                      {"path", report::json_text(row.path)},
                      {"error", report::json_text(row.error)}});
    else
      rows.push_back({{"pid", row.pid},
                      {"state", row.state},
                      {"running", row.running},
                      {"path", report::json_text(row.path)},
                      {"program", report::json_text(row.program)},
                      {"command_line", report::json_text(row.command_line)},
                      {"uptime_seconds", static_cast<double>(row.uptime_ns) / 1e9},
                      {"live_bytes", row.live_bytes},
                      {"leaked_bytes", row.leaked_bytes}});
  });
  return rows.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

int list_processes(bool json, bool clean) {
  if (json) {
    fmt::print("{}", process_list_json(clean));
    return 0;
  }
  fmt::print("{:>8}  {:<10}  {:>9}  {:>11}  {:>11}  {}\n", "PID", "STATE", "UPTIME", "LIVE", "LEAKED", "PROGRAM");
  for_each_process(clean, [](const ProcessRow& row) {
    if (!row.readable) {
      fmt::print("{:>8}  {:<10}  {}\n", row.pid, row.state, printable(row.error));
      return;
    }
    fmt::print("{:>8}  {:<10}  {:>9}  {:>11}  {:>11}  {}\n", row.pid, row.state,
               row.have_figures ? uptime_text(row.uptime_ns) : "-",
               row.have_figures ? human_bytes(row.live_bytes) : "-",
               row.have_figures ? human_bytes(row.leaked_bytes) : "-", program_text(row.program, row.command_line));
  });
  return 0;
}

int show_stats(pid_t pid, bool json) {
  SegmentReader reader;
  auto snapshot = std::make_unique<stats::Snapshot>();
  if (!open_snapshot(pid, reader, *snapshot, true)) return 1;
  const SegmentInfo info = reader.info();
  const stats::Snapshot& s = *snapshot;
  // Read right after the snapshot: the kernel's half of the breakdown (rss_breakdown.h).
  const RssBreakdown rss = info.producer_alive ? measure_rss(pid, s, reader.path()) : RssBreakdown{};
  if (json) {
    nlohmann::json doc = snapshot_json(info, s);
    if (info.producer_alive) doc["rss"] = rss_json(rss);
    fmt::print("{}\n", doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
    return 0;
  }
  std::string state = info.state_name();
  // A stopped process publishes nothing: say how old its figures are.
  if (info.stopped()) state += fmt::format(": figures from {} ago", uptime_text(age_ns(s)));
  fmt::print("pid {} {} ({}), up {}\n", info.pid, program_text(info.program, info.command_line), state,
             uptime_text(s.uptime_ns));
  fmt::print("  live {} in {} blocks (peak {}), {:.0f} allocs/s, {:.0f} frees/s\n", human_bytes(s.live_bytes),
             s.live_blocks, human_bytes(s.peak_live_bytes), s.allocation_rate, s.free_rate);
  fmt::print("  heap: mapped {}, resident {}, returned to the OS {}\n", human_bytes(s.heap_mapped_bytes),
             human_bytes(s.heap_resident_bytes), human_bytes(s.heap_returned_bytes));
  if (info.producer_alive) {
    for (const std::string& line : rss_text_lines(rss)) fmt::print("{}\n", line);
  }
  if (s.scan_count > 0) {
    const stats::ScanFigures& f = s.scans[s.scan_count - 1];
    fmt::print("  last scan #{}: {} leaked in {} blocks ({} new), pause {:.1f} ms\n", f.number,
               human_bytes(f.leaked_bytes), f.leaked_blocks, f.new_leaked_blocks, f.pause_ms);
  }
  fmt::print("  top sites by live bytes:\n");
  for (uint32_t i = 0; i < s.site_count && i < 5; ++i) {
    const stats::Site& site = s.sites[i];
    fmt::print("    {:>10} in {:>8} blocks  {}\n", human_bytes(site.live_bytes), site.live_blocks, site_text(site));
  }
  // Reachable but rising: a cache or list nobody trims (stats/site_growth.h).
  for (uint32_t i = 0; i < s.site_count; ++i) {
    const stats::Site& site = s.sites[i];
    if (site.growing == 0) continue;
    fmt::print("  growing: {} (+{}/s, now {})\n", site_text(site),
               human_bytes(static_cast<uint64_t>(site.growth_bytes_per_second)), human_bytes(site.live_bytes));
  }
  return 0;
}

int request_scan(pid_t pid, bool json) {
  SegmentReader reader;
  std::string error, response;
  if (!reader.open(pid, true, error)) {
    fmt::print(stderr, "heapkeeper: {}\n", error);
    return 1;
  }
  if (refuse_if_stopped(reader, pid, "scan")) return 1;
  if (!reader.command(stats::Command::kScan, 60000, response, error)) {
    fmt::print(stderr, "heapkeeper: scan of pid {} failed: {}\n", pid, error);
    return 1;
  }
  nlohmann::json doc = nlohmann::json::parse(response, nullptr, false);
  if (doc.is_discarded() || !doc.contains("scan")) {
    fmt::print(stderr, "heapkeeper: pid {} sent an unreadable answer\n", pid);
    return 1;
  }
  if (json) {
    fmt::print("{}\n", doc["scan"].dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
    return 0;
  }
  const auto& scan = doc["scan"];
  fmt::print("scan #{} of pid {}: {} leaked in {} blocks ({} new), {} reachable blocks, pause {:.1f} ms ({})\n",
             scan.value("number", 0), pid, human_bytes(doc.value("leaked_bytes", uint64_t{0})),
             doc.value("leaked_blocks", uint64_t{0}), scan.value("new_leaked_blocks", uint64_t{0}),
             scan.value("reachable_blocks", uint64_t{0}), scan.value("pause_ms", 0.0),
             scan.value("stop_method", std::string("stopped")));
  return 0;
}

int fetch_report(pid_t pid, bool json, size_t sites_shown, size_t frames_shown) {
  SegmentReader reader;
  std::string error, response;
  if (!reader.open(pid, true, error)) {
    fmt::print(stderr, "heapkeeper: {}\n", error);
    return 1;
  }
  if (refuse_if_stopped(reader, pid, "report on")) return 1;
  if (!reader.command(stats::Command::kReport, 60000, response, error)) {
    fmt::print(stderr, "heapkeeper: report of pid {} failed: {}\n", pid, error);
    return 1;
  }
  if (json) {
    fmt::print("{}", response);
    return 0;
  }
  // Same rendering as `heapkeeper show` on an exit report, checked the same way.
  nlohmann::json doc;
  if (const std::string problem = parse_report(response, doc); !problem.empty()) {
    fmt::print(stderr, "heapkeeper: the report of pid {} is {}\n", pid, problem);
    return 1;
  }
  show_report_document(doc, sites_shown, frames_shown);
  return 0;
}

std::string prometheus_text(const std::vector<pid_t>& requested, bool all, bool openmetrics,
                            std::vector<std::string>& problems) {
  // With `all`, each segment file is opened as listed: opening by pid would list /dev/shm again
  // for every process, and wait for segments still being made.
  std::vector<SegmentFile> files;
  if (all) files = SegmentReader::list_files();
  const size_t count = all ? files.size() : requested.size();
  auto snapshot = std::make_unique<stats::Snapshot>();
  struct Metric {
    const char* name;
    const char* type;
    const char* help;
  };
  const Metric metrics[] = {
      {"heapkeeper_live_bytes", "gauge", "Bytes in live blocks of the private heap."},
      {"heapkeeper_live_blocks", "gauge", "Live blocks of the private heap."},
      {"heapkeeper_peak_live_bytes", "gauge", "Peak of live bytes."},
      {"heapkeeper_allocations", "counter", "Allocations since start."},
      {"heapkeeper_frees", "counter", "Frees since start."},
      {"heapkeeper_heap_resident_bytes", "gauge", "Resident bytes of the heap's address space."},
      {"heapkeeper_heap_returned_bytes", "counter", "Bytes purged back to the OS since start."},
      {"heapkeeper_leaked_bytes", "gauge", "Bytes unreachable at the last scan."},
      {"heapkeeper_leaked_blocks", "gauge", "Blocks unreachable at the last scan."},
      {"heapkeeper_scans", "counter", "Leak scans run."},
  };
  std::vector<std::string> lines[std::size(metrics)];
  for (size_t i = 0; i < count; ++i) {
    const pid_t pid = all ? files[i].pid : requested[i];
    SegmentReader reader;
    std::string error;
    const bool opened = all ? reader.open_file(files[i], false, error) : reader.open(pid, false, error);
    if (!opened || !reader.snapshot(*snapshot, error, /*figures_only=*/true)) {
      problems.push_back(fmt::format("pid {}: {}", pid, error));
      continue;
    }
    const SegmentInfo info = reader.info();
    if (!info.producer_alive && all) continue;
    // Label values are UTF-8 in OpenMetrics: the same lossless escapes as in JSON.
    std::string program = report::json_text(info.program.substr(info.program.rfind('/') + 1));
    for (char& c : program) {
      if (c == '"' || c == '\\' || c == '\n') c = '_';
    }
    const stats::Snapshot& s = *snapshot;
    const uint64_t scans = s.scan_count == 0 ? 0 : s.scans[s.scan_count - 1].number;
    const uint64_t values[] = {s.live_bytes,
                               s.live_blocks,
                               s.peak_live_bytes,
                               s.total_allocations,
                               s.total_frees,
                               s.heap_resident_bytes,
                               s.heap_returned_bytes,
                               last_leaked_bytes(s),
                               s.scan_count == 0 ? 0 : s.scans[s.scan_count - 1].leaked_blocks,
                               scans};
    for (size_t m = 0; m < std::size(metrics); ++m) {
      const bool counter = std::string(metrics[m].type) == "counter";
      lines[m].push_back(fmt::format("{}{}{{pid=\"{}\",program=\"{}\"}} {}", metrics[m].name, counter ? "_total" : "",
                                     pid, program, values[m]));
    }
  }
  std::string text;
  // The two formats name a counter differently: OpenMetrics declares the family
  // (heapkeeper_allocations) and suffixes its samples with _total; Prometheus's text format, which
  // node_exporter's textfile collector and promtool read, declares the sample's own name.
  for (size_t m = 0; m < std::size(metrics); ++m) {
    const bool counter = std::string(metrics[m].type) == "counter";
    const std::string declared = std::string(metrics[m].name) + (counter && !openmetrics ? "_total" : "");
    text += fmt::format("# HELP {} {}\n# TYPE {} {}\n", declared, metrics[m].help, declared, metrics[m].type);
    for (const std::string& line : lines[m]) text += line + "\n";
  }
  if (openmetrics) text += "# EOF\n";
  return text;
}

int export_prometheus(const std::vector<pid_t>& pids, bool all, bool openmetrics) {
  std::vector<std::string> problems;
  const std::string text = prometheus_text(pids, all, openmetrics, problems);
  for (const std::string& problem : problems) fmt::print(stderr, "heapkeeper: {}\n", problem);
  fmt::print("{}", text);
  return !problems.empty() && !all ? 1 : 0;
}

}  // namespace heapkeeper::view
