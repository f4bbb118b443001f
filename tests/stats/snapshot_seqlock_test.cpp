// The snapshot seqlock of stats/shm_layout.h with its producer and a reader on two threads of one
// process, as the publisher thread and `heapkeeper` share a segment across processes. Every
// snapshot the producer writes carries one generation number in every field the test looks at, so
// a torn copy accepted as consistent shows as mixed generations. CI also runs this test under
// ThreadSanitizer (build-tsan, scripts/test.sh), which reports any plain access racing with the
// other side: the copies of a seqlock must be atomic to be defined at all.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>

#include "stats/shm_layout.h"

namespace {

using namespace heapkeeper::stats;

template <typename SnapshotType>
void fill(SnapshotType& s, uint64_t generation) {
  s.time_ns = s.uptime_ns = s.publish_count = generation;
  s.live_bytes = s.total_allocations = generation;
  s.site_count = kMaxSites;
  s.thread_count = 4;
  s.leak_count = kMaxLeaks;
  s.series_count = kSeriesLength;
  s.scan_count = kMaxScans;
  for (auto& site : s.sites) {
    site.live_bytes = site.allocations = generation;
    for (auto& frame : site.frames) frame.address = generation;
  }
  for (uint32_t i = 0; i < s.thread_count; ++i) s.threads[i].allocations = generation;
  for (ScanFigures& scan : s.scans) scan.number = generation;
  for (auto& leak : s.leaks) {
    leak.bytes = generation;
    leak.frames[kMaxFrames - 1].address = generation;
  }
  for (SeriesPoint& point : s.series) point.time_ns = generation;
}

// The generation of a snapshot if every sampled field agrees, else 0.
template <typename SnapshotType>
uint64_t generation_of(const SnapshotType& s) {
  const uint64_t g = s.time_ns;
  const uint64_t samples[] = {s.uptime_ns,
                              s.publish_count,
                              s.live_bytes,
                              s.total_allocations,
                              s.sites[0].live_bytes,
                              s.sites[kMaxSites / 2].frames[kMaxFrames / 2].address,
                              s.sites[kMaxSites - 1].frames[kMaxFrames - 1].address,
                              s.threads[3].allocations,
                              s.scans[kMaxScans - 1].number,
                              s.leaks[0].bytes,
                              s.leaks[kMaxLeaks - 1].frames[kMaxFrames - 1].address,
                              s.series[0].time_ns,
                              s.series[kSeriesLength - 1].time_ns};
  for (uint64_t sample : samples) {
    if (sample != g) return 0;
  }
  return g;
}

// The generation of the figures and scans (what try_read_snapshot_figures copies) if they agree,
// else 0; and the tables must be as the reader left them (kUntouched).
constexpr uint64_t kUntouched = ~uint64_t{0};
uint64_t figures_generation_of(const Snapshot& s) {
  const uint64_t g = s.time_ns;
  const uint64_t samples[] = {s.uptime_ns,         s.publish_count,   s.live_bytes,
                              s.total_allocations, s.scans[0].number, s.scans[kMaxScans - 1].number};
  for (uint64_t sample : samples) {
    if (sample != g) return 0;
  }
  if (s.sites[0].live_bytes != kUntouched || s.leaks[kMaxLeaks - 1].bytes != kUntouched ||
      s.series[kSeriesLength - 1].time_ns != kUntouched)
    return 0;
  return g;
}

// A producer publishing 150 generations while a reader copies with `read` and checks each copy
// accepted as consistent with `generation`.
template <typename Copy>
void check_reader(SnapshotRead (*read)(const SharedSegment&, Copy&), uint64_t (*generation)(const Copy&), Copy& copy) {
  auto segment = std::make_unique<SharedSegment>();  // value-initialised: sequence 0, nothing published
  auto first = std::make_unique<Copy>();
  EXPECT_EQ(read(*segment, *first), SnapshotRead::kNeverPublished);

  constexpr uint64_t kPublishes = 150;
  std::atomic<bool> done{false};
  std::thread producer([&] {
    auto scratch = std::make_unique<RawSnapshot>();
    for (uint64_t g = 1; g <= kPublishes; ++g) {
      fill(*scratch, g);
      publish_snapshot(*segment, *scratch);
      // The real producer publishes twice a second; a short pause lets the reader finish copies
      // between publishes as well as overlap them.
      std::this_thread::sleep_for(std::chrono::microseconds(300));
    }
    done.store(true, std::memory_order_release);
  });

  uint64_t consistent = 0, retried = 0, last_generation = 0;
  bool finished = false;
  while (!finished) {
    finished = done.load(std::memory_order_acquire);  // one more read after the last publish
    const SnapshotRead result = read(*segment, copy);
    if (result == SnapshotRead::kBeingWritten) {
      ++retried;
      finished = false;
      continue;
    }
    if (result == SnapshotRead::kNeverPublished) continue;
    ++consistent;
    const uint64_t g = generation(copy);
    ASSERT_NE(g, 0u) << "a torn snapshot was accepted as consistent";
    ASSERT_GE(g, last_generation) << "snapshots went back in time";
    last_generation = g;
  }
  producer.join();
  EXPECT_EQ(last_generation, kPublishes) << "the last read must see the last publish";
  EXPECT_GT(consistent, 0u);
  std::cout << consistent << " consistent reads, " << retried << " retried while being written" << std::endl;
}

TEST(SnapshotSeqlock, ReaderNeverAcceptsATornSnapshot) {
  auto copy = std::make_unique<RawSnapshot>();
  check_reader<RawSnapshot>(try_read_snapshot, generation_of<RawSnapshot>, *copy);
}

// The figures-only read (`list`, `export`, `serve`'s /metrics): the same guarantee for what it
// copies, and the tables it skips are never written.
TEST(SnapshotSeqlock, FiguresOnlyReaderNeverAcceptsTornFiguresAndSkipsTheTables) {
  auto copy = std::make_unique<Snapshot>();
  for (Site& site : copy->sites) site.live_bytes = kUntouched;
  for (Leak& leak : copy->leaks) leak.bytes = kUntouched;
  for (SeriesPoint& point : copy->series) point.time_ns = kUntouched;
  check_reader<Snapshot>(try_read_snapshot_figures, figures_generation_of, *copy);
}

// A reader's copy of what the process published: every figure and table entry as published, each
// frame's address, module and offset kept and its names empty, whatever the copy held before.
TEST(SnapshotLayout, ExpandedSnapshotKeepsWhatWasPublishedAndGivesFramesEmptyNames) {
  auto raw = std::make_unique<RawSnapshot>();
  fill(*raw, 7);
  raw->sites[3].frames[2].module_index = 5;
  raw->sites[3].frames[2].module_offset = 0x1234;
  raw->leaks[9].frames[0].module_index = 2;
  raw->modules[5].load_bias = 0x400000;
  raw->python_codes[1].key = 42;
  auto out = std::make_unique<Snapshot>();
  std::memset(out.get(), 'x', sizeof(Snapshot));
  expand_snapshot(*raw, *out);
  EXPECT_EQ(generation_of(*out), 7u);
  EXPECT_EQ(out->site_count, kMaxSites);
  EXPECT_EQ(out->leak_count, kMaxLeaks);
  EXPECT_EQ(out->sites[3].frames[2].module_index, 5u);
  EXPECT_EQ(out->sites[3].frames[2].module_offset, 0x1234u);
  EXPECT_EQ(out->leaks[9].frames[0].module_index, 2u);
  EXPECT_EQ(out->modules[5].load_bias, 0x400000u);
  EXPECT_EQ(out->python_codes[1].key, 42u);
  for (const Site& site : out->sites) {
    for (const Frame& frame : site.frames) {
      EXPECT_EQ(frame.line, 0u);
      EXPECT_EQ(frame.function[0], '\0');
      EXPECT_EQ(frame.module[0], '\0');
      EXPECT_EQ(frame.file[0], '\0');
    }
  }
  // Published frames take 24 bytes where a reader's take 344 (with the names): a watched process's
  // segment and scratch copy hold only the former.
  EXPECT_LT(sizeof(RawSite) * 10, sizeof(Site));
  EXPECT_LT(sizeof(RawLeak) * 10, sizeof(Leak));
}

}  // namespace
