// Implementation of the process screen's title, figures and chart (see view_figures.h).
#include "viewer/view_figures.h"

#include <fmt/core.h>

#include <algorithm>

#include "viewer/view_chart.h"
#include "viewer/view_format.h"

namespace heapkeeper::view {
namespace {

constexpr int kGutter = 11;  // chart scale labels: "1023.9 KiB" and a rule

using Segments = std::vector<std::pair<std::string, Role>>;

const stats::ScanFigures* last_scan(const stats::Snapshot& s) {
  return s.scan_count == 0 ? nullptr : &s.scans[s.scan_count - 1];
}

std::string scan_age(const stats::Snapshot& s, const stats::ScanFigures& scan) {
  if (scan.time_ns == 0 || scan.time_ns > s.time_ns) return "just now";
  return format_duration(s.time_ns - scan.time_ns) + " ago";
}

void draw_title(Screen& screen, const SegmentInfo& info, const stats::Snapshot& s, bool exited) {
  const int width = screen.columns();
  const Role role = exited ? Role::kBanner : Role::kTitle;
  // The process's state as ps shows it: a stopped process (SIGSTOP) publishes nothing, so its
  // figures stand still, and a scan waits until it is continued.
  const std::string state = exited           ? "PROCESS EXITED: final figures, q quits"
                            : info.stopped() ? info.state_name() + ": figures frozen (kill -CONT resumes)"
                                             : info.state_name();
  const std::string right = fmt::format(" {}  up {} ", state, format_duration(s.uptime_ns));
  const std::string program = printable(info.program, screen.utf8());
  std::string left = fmt::format(" heapkeeper  pid {}  {}", info.pid, program);
  if (!info.command_line.empty()) left += "  [" + printable(info.command_line, screen.utf8()) + "]";
  const int right_width = std::min(screen.width_of(right), width / 2);
  screen.put(0, 0, left, width - right_width, role, true);
  screen.put(0, width - right_width, right, right_width, role, true);
}

}  // namespace

int figure_lines(bool compact) { return compact ? 2 : 5; }

namespace {

// " RSS   142.0 MiB = live 100.0 MiB + slack 1.2 MiB + heapkeeper 14.0 MiB + kept 20.0 MiB + outside
// 7.0 MiB (?-72.0 KiB)": the parts of rss_breakdown.h, and what they leave unexplained.
void draw_rss(Screen& screen, int y, const RssBreakdown& rss, bool exited) {
  const int width = screen.columns();
  if (!rss.known) {
    screen.draw_segments(y, 0, width,
                         {{" RSS   ", Role::kLabel},
                          {exited               ? "-"
                           : rss.rss_bytes != 0 ? format_bytes(rss.rss_bytes)
                                                : "-",
                           Role::kValue},
                          {exited ? "" : "  (" + rss.error + ")", Role::kDim}});
    return;
  }
  Segments line = {{" RSS   ", Role::kLabel},        {format_bytes(rss.rss_bytes), Role::kValue},
                   {" = live ", Role::kLabel},       {format_bytes(rss.live_bytes), Role::kValue},
                   {" + slack ", Role::kLabel},      {format_bytes(rss.slack_bytes), Role::kValue},
                   {" + heapkeeper ", Role::kLabel}, {format_bytes(rss.heapkeeper.total()), Role::kValue},
                   {" + kept ", Role::kLabel},       {format_bytes(rss.kept.total()), Role::kValue},
                   {" + outside ", Role::kLabel},    {format_bytes(rss.outside.total()), Role::kValue}};
  if (const int64_t rest = rss.unexplained(); rest != 0)
    line.push_back(
        {fmt::format(" (?{}{})", rest < 0 ? "-" : "+", format_bytes(static_cast<uint64_t>(rest < 0 ? -rest : rest))),
         Role::kDim});
  screen.draw_segments(y, 0, width, line);
}

}  // namespace

void draw_figures(Screen& screen, const SegmentInfo& info, const stats::Snapshot& s, const RssBreakdown& rss,
                  bool exited, bool compact) {
  draw_title(screen, info, s, exited);
  const int width = screen.columns();
  const stats::ScanFigures* scan = last_scan(s);
  if (compact) {
    Segments line = {
        {" live ", Role::kLabel},
        {format_bytes(s.live_bytes), Role::kValue},
        {" in ", Role::kLabel},
        {format_count(s.live_blocks), Role::kValue},
        {" blocks  allocs/s ", Role::kLabel},
        {format_rate(s.allocation_rate), Role::kValue},
        {"  leaked ", Role::kLabel},
        {scan ? format_bytes(scan->leaked_bytes) : "-", scan && scan->leaked_bytes ? Role::kLeaked : Role::kValue}};
    if (rss.known) {
      line.push_back({"  rss ", Role::kLabel});
      line.push_back({format_bytes(rss.rss_bytes), Role::kValue});
    }
    screen.draw_segments(1, 0, width, line);
    return;
  }
  // The figures fit 80 columns; wider terminals also get the totals since start.
  const bool wide = width >= 112;
  // The library tracks the peak to within 256 KiB a thread, so it can trail the live figure read a
  // moment earlier; never show a peak below the live bytes beside it.
  const uint64_t peak = std::max(s.peak_live_bytes, s.live_bytes);
  Segments live = {{" Live  ", Role::kLabel},        {format_bytes(s.live_bytes), Role::kValue},
                   {" in ", Role::kLabel},           {format_count(s.live_blocks), Role::kValue},
                   {" blocks  peak ", Role::kLabel}, {format_bytes(peak), Role::kValue},
                   {"  allocs/s ", Role::kLabel},    {format_rate(s.allocation_rate), Role::kValue},
                   {"  frees/s ", Role::kLabel},     {format_rate(s.free_rate), Role::kValue}};
  if (wide) {
    live.insert(live.end(), {{"  allocs ", Role::kLabel},
                             {format_count(s.total_allocations), Role::kValue},
                             {"  frees ", Role::kLabel},
                             {format_count(s.total_frees), Role::kValue}});
  }
  screen.draw_segments(1, 0, width, live);
  Segments heap = {{" Heap  ", Role::kLabel},
                   {"mapped ", Role::kLabel},
                   {format_bytes(s.heap_mapped_bytes), Role::kValue},
                   {"  resident ", Role::kLabel},
                   {format_bytes(s.heap_resident_bytes), Role::kValue},
                   {"  returned ", Role::kLabel},
                   {format_bytes(s.heap_returned_bytes), Role::kValue},
                   {"  threads ", Role::kLabel},
                   {format_count(s.thread_count), Role::kValue},
                   {"  sites ", Role::kLabel},
                   {format_count(s.total_site_count), Role::kValue}};
  if (s.bad_frees > 0) {
    heap.push_back({"  bad frees ", Role::kLabel});
    heap.push_back({format_count(s.bad_frees), Role::kError});
  }
  screen.draw_segments(2, 0, width, heap);
  draw_rss(screen, 3, rss, exited);
  if (scan == nullptr) {
    screen.draw_segments(4, 0, width,
                         {{" Scan  ", Role::kLabel}, {"none yet (press g to scan for leaks)", Role::kDim}});
    return;
  }
  screen.draw_segments(4, 0, width,
                       {{" Scan  ", Role::kLabel},
                        {fmt::format("#{}", scan->number), Role::kValue},
                        {" " + scan_age(s, *scan) + ": leaked ", Role::kLabel},
                        {format_bytes(scan->leaked_bytes), scan->leaked_bytes ? Role::kLeaked : Role::kValue},
                        {" in ", Role::kLabel},
                        {format_count(scan->leaked_blocks), Role::kValue},
                        {" blocks (", Role::kLabel},
                        {format_count(scan->new_leaked_blocks), Role::kValue},
                        {" new)  pause ", Role::kLabel},
                        {fmt::format("{:.1f} ms", finite_rate(scan->pause_ms)), Role::kValue},
                        {scan->ok ? "" : "   (scan failed)", Role::kError}});
}

void draw_charts(Screen& screen, const stats::Snapshot& s, int y, int height) {
  if (height < 4) return;
  const int width = screen.columns();
  const int plot_width = width - kGutter - 1;
  if (plot_width < 10) return;
  const bool utf8 = screen.utf8();
  const SeriesValues series = series_of(s);
  const size_t shown = std::min(chart_capacity(plot_width, utf8), series.live_bytes.size());
  const uint64_t live_max = max_of_last(series.live_bytes, shown);
  const uint64_t leaked_max = max_of_last(series.leaked_bytes, shown);
  const uint64_t live_now = series.live_bytes.empty() ? s.live_bytes : series.live_bytes.back();
  const uint64_t leaked_now = series.leaked_bytes.empty() ? 0 : series.leaked_bytes.back();
  // The span of the points shown, assuming the builder's one point a second.
  const uint64_t span_ns = shown <= 1 ? 0 : std::min<uint64_t>(series.span_ns, (shown - 1) * 1000000000ull);
  screen.draw_segments(y, 0, width,
                       {{" live bytes", Role::kLive},
                        {" now ", Role::kLabel},
                        {format_bytes(live_now), Role::kValue},
                        {"   leaked bytes", Role::kLeaked},
                        {" now ", Role::kLabel},
                        {format_bytes(leaked_now), Role::kValue},
                        {fmt::format("   last {}", format_duration(span_ns)), Role::kLabel}});
  const int live_height = (height - 1 + 1) * 3 / 5;
  const int leaked_height = height - 1 - live_height;
  const char* rule = utf8 ? "\u2502" : "|";
  struct Chart {
    const std::vector<uint64_t>* values;
    uint64_t max;
    int top, height;
    Role role;
  };
  const Chart charts[] = {{&series.live_bytes, live_max, y + 1, live_height, Role::kLive},
                          {&series.leaked_bytes, leaked_max, y + 1 + live_height, leaked_height, Role::kLeaked}};
  for (const Chart& chart : charts) {
    if (chart.height <= 0) continue;
    const std::vector<std::string> lines = render_area_chart(*chart.values, chart.max, plot_width, chart.height, utf8);
    for (int row = 0; row < chart.height; ++row) {
      std::string label;
      if (row == 0)
        label = format_bytes(chart.max);
      else if (row == chart.height - 1)
        label = "0";
      screen.put(chart.top + row, 0, fmt::format("{:>{}}", label, kGutter - 1), kGutter - 1, Role::kDim);
      screen.put(chart.top + row, kGutter - 1, rule, 1, Role::kDim);
      screen.put(chart.top + row, kGutter, lines[static_cast<size_t>(row)], plot_width, chart.role);
    }
  }
}

}  // namespace heapkeeper::view
