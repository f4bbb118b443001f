// Unit tests for the reader's half of the RSS breakdown (viewer/rss_breakdown.h): combine_rss on
// smaps text written here, with published ranges and a pagemap stand-in, so each attribution rule
// is checked against a figure worked out by hand.
#include "viewer/rss_breakdown.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace heapkeeper::view {
namespace {

constexpr uint64_t kKiB = 1024;

std::string mapping(uint64_t start, uint64_t end, const char* perms, const std::string& path, uint64_t rss_kib) {
  char head[160];
  std::snprintf(head, sizeof head, "%llx-%llx %s 00000000 00:00 0", static_cast<unsigned long long>(start),
                static_cast<unsigned long long>(end), perms);
  return std::string(head) + (path.empty() ? "" : "    " + path) + "\nSize: " + std::to_string((end - start) / 1024) +
         " kB\nRss:  " + std::to_string(rss_kib) + " kB\nPss:  " + std::to_string(rss_kib) + " kB\n";
}

void add_range(stats::Snapshot& s, uint64_t start, uint64_t end, stats::RangeKind kind) {
  s.memory.ranges[s.memory.range_count++] = {start, end, static_cast<uint32_t>(kind), 0};
}

std::unique_ptr<stats::Snapshot> walked_snapshot() {
  auto s = std::make_unique<stats::Snapshot>();
  stats::MemoryFigures& m = s->memory;
  m.walked = 1;
  m.live_resident_bytes = 1000 * kKiB;
  m.live_untouched_bytes = 64 * kKiB;
  m.slack_bytes = 20 * kKiB;
  m.header_bytes = 4 * kKiB;
  m.live_region_bytes = 1024 * kKiB + 64 * kKiB;
  m.tracked = {1100 * kKiB, 1200 * kKiB, 200 * kKiB, 8 * kKiB, 12 * kKiB};
  m.trim_policy = static_cast<uint32_t>(stats::TrimPolicy::kOff);
  return s;
}

constexpr uint64_t kHeap = 0x7f0000000000, kInternal = 0x7f1000000000, kTables = 0x7f2000000000;

TEST(RssBreakdown, MergedMappingIsSplitByPresentPagesAndTheRestIsByPath) {
  auto s = walked_snapshot();
  add_range(*s, kHeap, kHeap + (4 << 20), stats::RangeKind::kTrackedHeap);
  add_range(*s, kInternal, kInternal + (1 << 20), stats::RangeKind::kInternalHeap);
  add_range(*s, kTables, kTables + (2 << 20), stats::RangeKind::kHeapkeeperTable);
  add_range(*s, 0x500000, 0x600000, stats::RangeKind::kHeapkeeperImage);
  add_range(*s, 0x700000, 0x708000, stats::RangeKind::kProgramStack);
  // One VMA holding the heap, the internal heap and the tables (the kernel merged them), with
  // 3000 KiB resident: 2400 in the heap, 300 in the internal heap, 200 in the tables, 100 in none.
  const std::string smaps =
      mapping(0x500000, 0x600000, "r-xp", "/lib/libheapkeeper.so", 700) +
      mapping(0x600000, 0x640000, "r-xp", "/usr/lib/libc.so.6", 900) + mapping(0x700000, 0x708000, "rw-p", "", 16) +
      mapping(0x7ffe0000, 0x80000000, "rw-p", "[stack]", 24) +
      mapping(0x900000, 0xa00000, "rw-s", "/dev/shm/heapkeeper.12.ab", 80) +
      mapping(0xa00000, 0xb00000, "rw-s", "/dev/shm/other", 40) + mapping(0xc00000, 0xd00000, "rw-p", "", 500) +
      mapping(kHeap, kTables + (1ull << 30), "rw-p", "", 3000);
  const std::string rollup = "00400000-7fffffffffff ---p 00000000 00:00 0 [rollup]\nRss:  5260 kB\n";
  int asked = 0;
  const ResidentBytes pagemap = [&](uint64_t start, uint64_t end) -> uint64_t {
    ++asked;
    if (start == kHeap && end == kHeap + (4 << 20)) return 2400 * kKiB;
    if (start == kInternal && end == kInternal + (1 << 20)) return 300 * kKiB;
    if (start == kTables && end == kTables + (2 << 20)) return 200 * kKiB;
    ADD_FAILURE() << "asked about " << std::hex << start << "-" << end;
    return 0;
  };
  const RssBreakdown b = combine_rss(rollup, smaps, *s, "/dev/shm/heapkeeper.12.ab", pagemap);
  ASSERT_TRUE(b.known) << b.error;
  EXPECT_EQ(asked, 3);  // only the merged mapping needs the pagemap
  EXPECT_EQ(b.rss_bytes, 5260 * kKiB);
  EXPECT_EQ(b.heap_mapping_rss, 2400 * kKiB);
  EXPECT_EQ(b.heapkeeper.internal_heap, 300 * kKiB);
  EXPECT_EQ(b.heapkeeper.tables, 200 * kKiB);
  EXPECT_EQ(b.heapkeeper.library, 700 * kKiB);
  EXPECT_EQ(b.heapkeeper.segment, 80 * kKiB);
  EXPECT_EQ(b.heapkeeper.headers, 4 * kKiB);
  EXPECT_EQ(b.heapkeeper.jemalloc_metadata, 12 * kKiB);
  EXPECT_EQ(b.outside.code_and_files, 900 * kKiB);
  EXPECT_EQ(b.outside.stacks, (16 + 24) * kKiB);
  EXPECT_EQ(b.outside.shared_memory, 40 * kKiB);
  EXPECT_EQ(b.outside.anonymous, (500 + 100) * kKiB);  // the merged mapping's pages in no range
  EXPECT_EQ(b.live_bytes, 1000 * kKiB);
  EXPECT_EQ(b.live_untouched_bytes, 64 * kKiB);
  EXPECT_EQ(b.slack_bytes, 20 * kKiB);
  EXPECT_EQ(b.kept.dirty, 200 * kKiB);
  EXPECT_EQ(b.kept.muzzy, 8 * kKiB);
  EXPECT_EQ(b.kept.free_regions, 1200 * kKiB - 1088 * kKiB);  // active pages no live region covers
  // The heap's own pages come from the process's walk, not from the mapping: 1000 + 20 + 4 + 12 +
  // 208 + 112 = 1356 KiB of the 2400 the mapping holds, so the parts leave 1044 KiB unexplained.
  EXPECT_EQ(b.sum(), (1000 + 20 + (4 + 12 + 300 + 200 + 700 + 80) + (208 + 112) + (900 + 40 + 40 + 600)) * kKiB);
  EXPECT_EQ(b.unexplained(), static_cast<int64_t>(1044 * kKiB));
  const nlohmann::json doc = rss_json(b);
  EXPECT_EQ(doc["freed_memory_policy"], "off");
  EXPECT_EQ(doc["allocator_kept"]["returnable"], 208 * kKiB);
  EXPECT_EQ(doc["unexplained_bytes"], b.unexplained());
}

// jemalloc counts free slab regions whose pages were never touched: the tracked reservation's
// resident pages cap them (a traced sleep's parts came to 106% of its RSS before).
TEST(RssBreakdown, FreeRegionsAreCappedByWhatTheHeapHoldsResident) {
  auto s = walked_snapshot();
  s->memory.tracked.active_bytes = 2200 * kKiB;  // 1112 KiB of free regions by jemalloc's count
  add_range(*s, kHeap, kHeap + (4 << 20), stats::RangeKind::kTrackedHeap);
  const std::string smaps = mapping(kHeap, kHeap + (4 << 20), "rw-p", "", 1300);
  const RssBreakdown b = combine_rss("Rss: 1300 kB\n", smaps, *s, "", [](uint64_t, uint64_t) -> uint64_t {
    ADD_FAILURE() << "pagemap asked";
    return 0;
  });
  ASSERT_TRUE(b.known) << b.error;
  EXPECT_EQ(b.heap_mapping_rss, 1300 * kKiB);
  // live 1000, slack 20, headers 4, metadata 12, dirty 200, muzzy 8: 1244 of the 1300 resident.
  EXPECT_EQ(b.kept.free_regions, 56 * kKiB);
  EXPECT_EQ(b.unexplained(), 0);
}

TEST(RssBreakdown, AMappingInsideOneRangeNeedsNoPagemap) {
  auto s = walked_snapshot();
  add_range(*s, 0x10000000, 0x20000000, stats::RangeKind::kHeapkeeperStack);
  const std::string smaps = mapping(0x10001000, 0x10100000, "rw-p", "", 36);
  const RssBreakdown b = combine_rss("Rss: 36 kB\n", smaps, *s, "", [](uint64_t, uint64_t) -> uint64_t {
    ADD_FAILURE() << "pagemap asked";
    return 0;
  });
  ASSERT_TRUE(b.known);
  EXPECT_EQ(b.heapkeeper.stacks, 36 * kKiB);
}

TEST(RssBreakdown, APagemapAnswerLargerThanTheMappingIsCapped) {
  auto s = walked_snapshot();
  add_range(*s, 0x10000000, 0x10100000, stats::RangeKind::kInternalHeap);
  add_range(*s, 0x10100000, 0x10200000, stats::RangeKind::kHeapkeeperTable);
  const std::string smaps = mapping(0x10000000, 0x10200000, "rw-p", "", 100);
  const RssBreakdown b =
      combine_rss("Rss: 100 kB\n", smaps, *s, "", [](uint64_t, uint64_t) -> uint64_t { return 80 * kKiB; });
  ASSERT_TRUE(b.known);
  EXPECT_EQ(b.heapkeeper.internal_heap, 80 * kKiB);
  EXPECT_EQ(b.heapkeeper.tables, 20 * kKiB);  // what the mapping has left, never more
  EXPECT_EQ(b.outside.anonymous, 0u);
}

TEST(RssBreakdown, NotKnownWithoutAWalkOrAnRssLine) {
  stats::Snapshot* unwalked = new stats::Snapshot();
  std::unique_ptr<stats::Snapshot> owner(unwalked);
  const ResidentBytes none = [](uint64_t, uint64_t) -> uint64_t { return 0; };
  RssBreakdown b = combine_rss("Rss: 100 kB\n", "", *unwalked, "", none);
  EXPECT_FALSE(b.known);
  EXPECT_EQ(b.rss_bytes, 100 * kKiB);
  EXPECT_NE(b.error.find("not measured"), std::string::npos);
  EXPECT_EQ(rss_json(b)["known"], false);
  b = combine_rss("Pss: 100 kB\n", "", *walked_snapshot(), "", none);
  EXPECT_FALSE(b.known);
  EXPECT_NE(rss_text_lines(b).front().find("no breakdown"), std::string::npos);
}

}  // namespace
}  // namespace heapkeeper::view
