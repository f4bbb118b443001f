// Golden-output tests of the live view's text parts, without a terminal: the chart
// (view_chart.h), the tables' sorting, filtering and cells (view_rows.h) and the number formats
// (view_format.h).
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "stats/shm_layout.h"
#include "viewer/view_baseline.h"
#include "viewer/view_chart.h"
#include "viewer/view_format.h"
#include "viewer/view_rows.h"

namespace heapkeeper::view {
namespace {

void set_frame(stats::Frame& frame, const char* function, const char* module, const char* file, uint32_t line,
               uint64_t address) {
  std::strncpy(frame.function, function, sizeof(frame.function) - 1);
  std::strncpy(frame.module, module, sizeof(frame.module) - 1);
  std::strncpy(frame.file, file, sizeof(frame.file) - 1);
  frame.line = line;
  frame.address = address;
  frame.module_offset = address & 0xffff;
}

// Three sites, two leaks, two threads.
std::unique_ptr<stats::Snapshot> sample() {
  auto s = std::make_unique<stats::Snapshot>();
  struct SiteSpec {
    const char* function;
    const char* module;
    uint64_t bytes, blocks;
    double rate;
    uint64_t leaked;
  };
  const SiteSpec sites[] = {{"parse_input", "/usr/bin/tool", 5000, 10, 1.5, 0},
                            {"cache_insert", "/usr/lib/libcache.so", 3000, 300, 250, 1000},
                            {"operator new(unsigned long)", "/usr/lib/libstdc++.so.6", 100, 1, 0, 0}};
  for (const SiteSpec& spec : sites) {
    stats::Site& site = s->sites[s->site_count];
    site.live_bytes = spec.bytes;
    site.live_blocks = spec.blocks;
    site.allocation_rate = spec.rate;
    site.leaked_bytes = spec.leaked;
    site.stack_id = 100 + s->site_count;
    site.depth = 2;
    set_frame(site.frames[0], spec.function, spec.module, "/src/tool.c", 10 + s->site_count, 0x1000 + s->site_count);
    set_frame(site.frames[1], "main", "/usr/bin/tool", "/src/main.c", 5, 0x2000);
    ++s->site_count;
  }
  // The operator new site's caller is what the table shows.
  set_frame(s->sites[2].frames[1], "make_widget", "/usr/bin/tool", "/src/widget.cc", 77, 0x3000);
  s->leak_count = 2;
  s->leaks[0] = {1, 1, 1, 64, 1, 0, {}};
  set_frame(s->leaks[0].frames[0], "leak_small", "/usr/bin/tool", "", 0, 0x4321);
  s->leaks[1] = {0, 1, 9, 4096, 0, 3, {}};
  set_frame(s->leaks[1].frames[0], "leak_big", "/usr/bin/tool", "/src/leak.c", 9, 0x5000);
  s->thread_count = 2;
  s->threads[0] = {100, 1, 1000, 50, 10, "main"};
  s->threads[1] = {101, 2, -200, 5, 60, "worker"};
  return s;
}

std::vector<std::string> column(const std::vector<Row>& rows, size_t index) {
  std::vector<std::string> out;
  for (const Row& row : rows) out.push_back(row.cells.at(index));
  return out;
}

TEST(ViewChart, BrailleAreaGolden) {
  // Eight points in four cells, two rows (eight levels): 0, 1, 2, ... 7 of a scale of 8.
  const std::vector<uint64_t> values = {0, 1, 2, 3, 4, 5, 6, 7};
  const std::vector<std::string> lines = render_area_chart(values, 8, 4, 2, true);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "  \u2880\u28f4");            // top row: levels 5..8
  EXPECT_EQ(lines[1], "\u2880\u28f4\u28ff\u28ff");  // bottom row: levels 1..4, full from 4 up
}

TEST(ViewChart, AsciiAreaGolden) {
  const std::vector<uint64_t> values = {4, 3, 2, 1, 0};
  const std::vector<std::string> lines = render_area_chart(values, 4, 6, 2, false);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], " :.   ");
  EXPECT_EQ(lines[1], " :::. ");
}

TEST(ViewChart, EveryLineHasTheWidthAndSmallValuesShow) {
  std::vector<uint64_t> values(5000, 0);
  values.back() = 1;  // one byte against a scale of a gigabyte still gets a dot
  for (bool utf8 : {true, false}) {
    const std::vector<std::string> lines = render_area_chart(values, 1ull << 30, 37, 5, utf8);
    ASSERT_EQ(lines.size(), 5u);
    for (const std::string& line : lines) {
      size_t cells = 0;
      for (char c : line) cells += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
      EXPECT_EQ(cells, 37u) << utf8;
    }
    EXPECT_NE(lines.back().back(), ' ');
  }
  EXPECT_TRUE(render_area_chart(values, 0, 0, 3, true).empty());
  EXPECT_TRUE(render_area_chart({}, 0, 10, 0, true).empty());
}

TEST(ViewChart, SeriesRingIsReadInOrder) {
  auto s = std::make_unique<stats::Snapshot>();
  s->series_count = 3;
  s->series_next = 1;  // points at 1198, 1199, 0
  s->series[stats::kSeriesLength - 2] = {1'000'000'000, 10, 1};
  s->series[stats::kSeriesLength - 1] = {2'000'000'000, 20, 2};
  s->series[0] = {3'000'000'000, 30, 3};
  const SeriesValues series = series_of(*s);
  EXPECT_EQ(series.live_bytes, (std::vector<uint64_t>{10, 20, 30}));
  EXPECT_EQ(series.leaked_bytes, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(series.span_ns, 2'000'000'000u);
  EXPECT_EQ(max_of_last(series.live_bytes, 2), 30u);
  EXPECT_EQ(max_of_last(series.live_bytes, 0), 0u);
}

TEST(ViewRows, SitesSortByEachOrder) {
  auto s = sample();
  EXPECT_EQ(sort_count(Tab::kSites), 6);
  EXPECT_STREQ(sort_name(Tab::kSites, 0), "live bytes");
  const size_t function = 6;
  EXPECT_EQ(column(build_rows(*s, Tab::kSites, 0, ""), function),
            (std::vector<std::string>{"parse_input", "cache_insert", "make_widget"}));
  EXPECT_EQ(column(build_rows(*s, Tab::kSites, 1, ""), function),
            (std::vector<std::string>{"cache_insert", "parse_input", "make_widget"}));
  EXPECT_EQ(column(build_rows(*s, Tab::kSites, 2, ""), function),
            (std::vector<std::string>{"cache_insert", "parse_input", "make_widget"}));
  EXPECT_EQ(column(build_rows(*s, Tab::kSites, 3, ""), function),
            (std::vector<std::string>{"cache_insert", "parse_input", "make_widget"}));
  const std::vector<Row> rows = build_rows(*s, Tab::kSites, 0, "");
  EXPECT_EQ(rows[0].cells,
            (std::vector<std::string>{"4.9 KiB", "10", "1.5", "-", "-", "-", "parse_input", "tool.c:10"}));
  EXPECT_EQ(rows[1].cells,
            (std::vector<std::string>{"2.9 KiB", "300", "250", "1000 B", "-", "-", "cache_insert", "tool.c:11"}));
  EXPECT_EQ(rows[2].cells[7], "widget.cc:77");
  EXPECT_EQ(rows[1].key, 101u);
  EXPECT_EQ(rows[1].index, 1u);
}

// What the user sees of retained sizes and growth: the RETAINED column (from the last scan, "-" where
// it did not compute the site) and GROWTH (bytes a second, growing sites only), each a sort order
// that puts the sites it knows nothing about last.
TEST(ViewRows, BaselineShowsChangesSinceTheMark) {
  auto s = sample();
  s->live_bytes = 8100;
  s->live_blocks = 311;
  s->total_site_count = s->site_count;  // every site listed at the mark
  const SiteBaseline baseline(*s, std::chrono::steady_clock::time_point{});
  // Nothing changed: every delta is zero, and the other columns are as without a baseline.
  std::vector<Row> rows = build_rows(*s, Tab::kSites, 0, "", &baseline);
  EXPECT_EQ(column(rows, 0), (std::vector<std::string>{"0 B", "0 B", "0 B"}));
  EXPECT_EQ(column(rows, 1), (std::vector<std::string>{"0", "0", "0"}));
  EXPECT_EQ(column(rows, 2), column(build_rows(*s, Tab::kSites, 0, ""), 2));
  // parse_input frees 4000 bytes in 8 blocks, cache_insert gains 1 KiB in 2, make_widget is the
  // same, and a new site appears.
  s->sites[0].live_bytes -= 4000;
  s->sites[0].live_blocks -= 8;
  s->sites[1].live_bytes += 1024;
  s->sites[1].live_blocks += 2;
  stats::Site& fresh = s->sites[s->site_count++];
  fresh = s->sites[2];
  fresh.stack_id = 999;
  fresh.live_bytes = 300;
  fresh.live_blocks = 3;
  std::strncpy(fresh.frames[0].function, "new_site", sizeof(fresh.frames[0].function));
  s->live_bytes = 8100 - 4000 + 1024 + 300;
  rows = build_rows(*s, Tab::kSites, 0, "", &baseline);  // sorted by the change in bytes
  const size_t function = 6;
  EXPECT_EQ(column(rows, function),
            (std::vector<std::string>{"cache_insert", "new_site", "make_widget", "parse_input"}));
  EXPECT_EQ(column(rows, 0), (std::vector<std::string>{"+1.0 KiB", "+300 B", "0 B", "-3.9 KiB"}));
  EXPECT_EQ(column(rows, 1), (std::vector<std::string>{"+2", "+3", "0", "-8"}));
  EXPECT_EQ(column(build_rows(*s, Tab::kSites, 1, "", &baseline), function),
            (std::vector<std::string>{"new_site", "cache_insert", "make_widget", "parse_input"}));
  // Other sort orders keep sorting by what they show.
  EXPECT_EQ(column(build_rows(*s, Tab::kSites, 3, "", &baseline), function)[0], "cache_insert");
  EXPECT_EQ(baseline.total_bytes_delta(*s), -4000 + 1024 + 300);
  // Without the baseline (cleared), the table shows what the sites hold.
  EXPECT_EQ(column(build_rows(*s, Tab::kSites, 0, ""), 0),
            (std::vector<std::string>{"3.9 KiB", "1000 B", "300 B", "100 B"}));
}

TEST(ViewRows, BaselineOfATruncatedSiteListBoundsNewSites) {
  auto s = sample();
  s->total_site_count = 500;  // only the largest sites were listed at the mark
  const SiteBaseline baseline(*s, std::chrono::steady_clock::time_point{});
  stats::Site& grown = s->sites[s->site_count++];
  grown = s->sites[0];
  grown.stack_id = 4242;  // not listed at the mark: it held at most what the smallest listed held
  grown.live_bytes = 2048;
  grown.live_blocks = 2;
  const std::vector<Row> rows = build_rows(*s, Tab::kSites, 0, "", &baseline);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].cells[0], "+2.0 KiB*");
  EXPECT_EQ(rows[0].cells[1], "+2*");
  EXPECT_EQ(rows[1].cells[0], "0 B");
  // Figures a corrupt snapshot may hold never overflow.
  stats::Site huge = s->sites[0];
  huge.live_bytes = UINT64_MAX;
  EXPECT_EQ(baseline.delta(huge).bytes, INT64_MAX);
  huge.stack_id = s->sites[0].stack_id;
  huge.live_blocks = 0;
  EXPECT_EQ(format_delta_blocks(baseline.delta(huge)), "-10");
}

TEST(ViewRows, RetainedAndGrowthColumnsAndSorts) {
  auto s = sample();
  s->sites[0].retained_known = 1;
  s->sites[0].retained_bytes = 2048;
  s->sites[1].retained_known = 1;
  s->sites[1].retained_bytes = 1 << 20;
  s->sites[2].growing = 1;
  s->sites[2].growth_bytes_per_second = 3072;
  s->sites[1].growth_bytes_per_second = 99999;  // not growing: not shown, not sorted as growing
  const auto& columns = columns_of(Tab::kSites);
  EXPECT_STREQ(columns[4].title, "RETAINED");
  EXPECT_STREQ(columns[5].title, "GROWTH");
  EXPECT_STREQ(sort_name(Tab::kSites, columns[4].sort), "retained bytes");
  EXPECT_STREQ(sort_name(Tab::kSites, columns[5].sort), "growth");
  const size_t function = 6;
  const std::vector<Row> by_retained = build_rows(*s, Tab::kSites, 4, "");
  EXPECT_EQ(column(by_retained, function), (std::vector<std::string>{"cache_insert", "parse_input", "make_widget"}));
  EXPECT_EQ(column(by_retained, 4), (std::vector<std::string>{"1.0 MiB", "2.0 KiB", "-"}));
  const std::vector<Row> by_growth = build_rows(*s, Tab::kSites, 5, "");
  EXPECT_EQ(by_growth[0].cells[function], "make_widget");
  EXPECT_EQ(column(by_growth, 5), (std::vector<std::string>{"+3.0 KiB/s", "-", "-"}));
}

// A library closed with dlclose and another loaded at its addresses: two leaks with the same return
// addresses in different modules are two rows, each keeping its own selection key.
TEST(ViewRows, LeaksAtTheSameAddressesInTwoLibrariesHaveTheirOwnKeys) {
  auto s = std::make_unique<stats::Snapshot>();
  s->leak_count = 2;
  s->leaks[0] = {1, 1, 3, 300, 3, 0, {}};
  s->leaks[1] = {1, 1, 5, 1000, 5, 0, {}};
  set_frame(s->leaks[0].frames[0], "alpha_make_block", "/plugins/libalpha.so", "plugin.c", 20, 0x7f0000001151);
  set_frame(s->leaks[1].frames[0], "bravo_make_block", "/plugins/libbravo.so", "plugin.c", 20, 0x7f0000001151);
  const std::vector<Row> rows = build_rows(*s, Tab::kLeaks, 0, "");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_NE(rows[0].key, rows[1].key);
}

TEST(ViewRows, FilterMatchesFunctionOrModuleOfAnyFrame) {
  auto s = sample();
  EXPECT_EQ(build_rows(*s, Tab::kSites, 0, "CACHE").size(), 1u);     // function, any case
  EXPECT_EQ(build_rows(*s, Tab::kSites, 0, "libcache").size(), 1u);  // module
  EXPECT_EQ(build_rows(*s, Tab::kSites, 0, "widget").size(), 1u);    // a frame below the top
  EXPECT_EQ(build_rows(*s, Tab::kSites, 0, "main").size(), 2u);
  EXPECT_EQ(build_rows(*s, Tab::kSites, 0, "no such thing").size(), 0u);
  EXPECT_EQ(build_rows(*s, Tab::kLeaks, 0, "leak_big").size(), 1u);
  EXPECT_EQ(build_rows(*s, Tab::kThreads, 0, "work").size(), 1u);
  EXPECT_EQ(build_rows(*s, Tab::kThreads, 0, "100").size(), 1u);
}

TEST(ViewRows, LeaksAndThreads) {
  auto s = sample();
  std::vector<Row> leaks = build_rows(*s, Tab::kLeaks, 0, "");
  ASSERT_EQ(leaks.size(), 2u);
  EXPECT_EQ(leaks[0].cells, (std::vector<std::string>{"indirect", "4.0 KiB", "9", "0", "3", "leak_big", "leak.c:9"}));
  EXPECT_EQ(leaks[1].cells, (std::vector<std::string>{"direct", "64 B", "1", "1", "0", "leak_small", "tool+0x4321"}));
  EXPECT_EQ(build_rows(*s, Tab::kLeaks, 2, "")[0].cells[5], "leak_small");  // by new blocks
  std::vector<Row> threads = build_rows(*s, Tab::kThreads, 0, "");
  EXPECT_EQ(threads[0].cells, (std::vector<std::string>{"100", "1", "main", "1000 B", "50", "10"}));
  EXPECT_EQ(threads[1].cells[3], "-200 B");
  EXPECT_EQ(build_rows(*s, Tab::kThreads, 2, "")[0].cells[2], "worker");  // by frees
}

TEST(ViewRows, NonFiniteRatesSortSafely) {
  auto s = sample();
  s->sites[0].allocation_rate = std::numeric_limits<double>::quiet_NaN();
  s->sites[1].allocation_rate = std::numeric_limits<double>::infinity();
  s->sites[2].allocation_rate = -5;
  const std::vector<Row> rows = build_rows(*s, Tab::kSites, 2, "");
  ASSERT_EQ(rows.size(), 3u);
  for (const Row& row : rows) EXPECT_EQ(row.cells[2], "0");
}

TEST(ViewRows, TabsCycle) {
  EXPECT_EQ(next_tab(Tab::kSites), Tab::kLeaks);
  EXPECT_EQ(next_tab(Tab::kThreads), Tab::kSites);
  EXPECT_EQ(previous_tab(Tab::kSites), Tab::kThreads);
  for (int t = 0; t < kTabCount; ++t) {
    const Tab tab = static_cast<Tab>(t);
    int sorted_columns = 0;
    for (const Column& c : columns_of(tab)) sorted_columns += c.sort >= 0;
    EXPECT_EQ(sorted_columns, sort_count(tab)) << tab_title(tab);
  }
}

TEST(ViewFormat, Numbers) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(48000), "46.9 KiB");
  EXPECT_EQ(format_bytes(UINT64_MAX), "16.0 EiB");
  EXPECT_EQ(format_signed_bytes(INT64_MIN), "-8.0 EiB");
  EXPECT_EQ(format_count(1234567), "1,234,567");
  EXPECT_EQ(format_count(999), "999");
  EXPECT_EQ(format_rate(std::nan("")), "0");
  EXPECT_EQ(format_rate(4.56), "4.6");
  EXPECT_EQ(format_rate(12345.4), "12,345");
  EXPECT_EQ(format_rate(1e300), "huge");
  EXPECT_EQ(format_duration(45'000'000'000ull), "45s");
  EXPECT_EQ(format_duration(185'000'000'000ull), "3m05s");
  EXPECT_EQ(format_duration(7'800'000'000'000ull), "2h10m");
}

TEST(ViewFormat, TextFromTheProcessIsMadePrintable) {
  EXPECT_EQ(printable("a\x1b[2Jb\n", true), "a?[2Jb?");
  EXPECT_EQ(printable("caf\xc3\xa9", false), "caf??");
  EXPECT_EQ(printable("caf\xc3\xa9", true), "caf\xc3\xa9");
  EXPECT_TRUE(contains_ignoring_case("std::vector<Foo>", "VECTOR"));
  EXPECT_FALSE(contains_ignoring_case("abc", "abcd"));
  stats::Frame frame{};
  EXPECT_EQ(frame_function(frame), "??");
  EXPECT_EQ(frame_location(frame), "??+0x0");
}

TEST(ViewFormat, LeakKinds) {
  EXPECT_EQ(leak_kind_text(0), "indirect");
  EXPECT_EQ(leak_kind_text(1), "direct");
  EXPECT_EQ(leak_kind_text(2), "cycle");
  EXPECT_EQ(leak_kind_text(7), "?");  // a corrupt or newer producer's value
}

}  // namespace
}  // namespace heapkeeper::view
