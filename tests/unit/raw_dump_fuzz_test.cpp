// Property and fuzz tests of the raw dump (report/raw_dump.h), the bytes a traced process hands to
// the `heapkeeper` binary: a dump survives the round trip; every truncation, random corruption and
// random buffer is either refused with a one-line reason or read into a report whose every index
// is valid (rendered here, with the symbolizer, to prove it) — never a crash or an over-read (the
// sanitized build runs this test under ASan and UBSan).
//
// The random tests use a fixed seed per run, printed on failure (HEAPKEEPER_FUZZ_SEED=N replays
// one); HEAPKEEPER_FUZZ_ITERATIONS scales the number of cases.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include "analysis/module_symbolizer.h"
#include "analysis/report_renderer.h"
#include "report/raw_dump.h"
#include "tests/support/fuzz_settings.h"

namespace heapkeeper::report {
namespace {

uint64_t seed() { return test_support::fuzz_seed(); }
int iterations(int normal) { return test_support::fuzz_iterations(normal); }

::testing::AssertionResult one_line_reason(const std::string& error) {
  if (error.empty()) return ::testing::AssertionFailure() << "empty reason";
  if (error.find('\n') != std::string::npos) return ::testing::AssertionFailure() << "multi-line reason: " << error;
  if (error.size() > 400) return ::testing::AssertionFailure() << "reason of " << error.size() << " characters";
  return ::testing::AssertionSuccess();
}

// A dump using every part of the format: a scan with groups, a module of each kind, frames in no
// module, bytes that are not UTF-8.
RawReport sample() {
  RawReport r;
  r.flags = kWantJson | kWantLeakText | kWantProfile;
  r.pid = 4242;
  r.started_at = 1700000000;
  r.written_at = 1700000001;
  r.program = "/usr/bin/pr\xe9gram";
  r.command_line = std::string("prog\0--flag\0\xff", 14);
  r.live_bytes = 300;
  r.live_blocks = 3;
  r.allocations = 10;
  r.stack_depth = 24;
  r.mode = 1;
  r.suppressions = {"hidden_*", "^libfoo$"};
  r.live_site_count = 2;
  r.live_sites = {{1, 2, 200}, {2, 1, 100}};
  r.thread_sites = {{1, 1, 1, 100}, {1, 2, 1, 100}, {2, 1, 1, 100}};
  r.threads = {{1, 4242, "main"}, {2, 4243, "w\xe9rker"}};
  r.scan.present = true;
  r.scan.number = 3;
  r.scan.ok = true;
  r.scan.at_exit = true;
  r.scan.stop_method = "ptrace";
  r.scan.leaked_blocks = 2;
  r.scan.leaked_bytes = 150;
  r.scan.groups = {{LeakKind::kDirect, 1, 1, 100, 1, 100, 0}, {LeakKind::kCycle, 3, 1, 50, 0, 0, 2}};
  r.scan.cycle_blocks = 1;
  r.scan.most_referenced = {{64, 7, 2}};
  r.modules = {{false, 0x555500000000, 0x555500001000, 0x555500005000, std::string("\x01\x02\x03", 3), "/bin/prog"},
               {true, 0x7f0000000000, 0x7f0000001000, 0x7f0000009000, "", "/tmp/gone.so"},
               {false, 0x7fff0000, 0x7fff0000, 0x7fff2000, "", "[vdso]", {{0xa00, 0x40, "__vdso_clock_gettime"}}}};
  r.stacks = {{1, {{0x555500001234, 0}, {0x7f0000001111, 1}}},
              {2, {{0x7fff0100, 2}, {0xdeadbeef, kNoModule}, {0x8000280000000abcull, kNoModule}}},
              {3, {}}};
  // The Python frame of stack 2 (code key 0xabc, code unit 5): its code's names.
  r.python_codes = {{0xabc, 7, "Cache.fill",
                     "/srv/app/c\xe9"
                     "che.py",
                     std::string("\x80\x00\xd8\x04", 4)}};
  return r;
}

TEST(RawDump, RoundTrip) {
  const RawReport in = sample();
  const std::string bytes = serialize_raw_dump(in);
  RawReport out;
  std::string error;
  ASSERT_TRUE(parse_raw_dump(bytes, out, error)) << error;
  EXPECT_EQ(out.pid, in.pid);
  EXPECT_EQ(out.program, in.program);
  EXPECT_EQ(out.command_line, in.command_line);
  EXPECT_EQ(out.suppressions, in.suppressions);
  ASSERT_EQ(out.scan.groups.size(), 2u);
  EXPECT_EQ(out.scan.groups[1].age_scans, 2u);
  EXPECT_EQ(out.scan.groups[0].kind, LeakKind::kDirect);
  EXPECT_EQ(out.scan.groups[1].kind, LeakKind::kCycle);
  EXPECT_EQ(out.scan.cycle_blocks, 1u);
  ASSERT_EQ(out.modules.size(), 3u);
  EXPECT_TRUE(out.modules[1].unloaded);
  EXPECT_EQ(out.modules[0].build_id, in.modules[0].build_id);
  ASSERT_EQ(out.modules[2].symbols.size(), 1u);
  EXPECT_EQ(out.modules[2].symbols[0].start, 0xa00u);
  EXPECT_EQ(out.modules[2].symbols[0].size, 0x40u);
  EXPECT_EQ(out.modules[2].symbols[0].name, "__vdso_clock_gettime");
  ASSERT_EQ(out.stacks.size(), 3u);
  EXPECT_EQ(out.stacks[1].frames[1].module, kNoModule);
  ASSERT_EQ(out.python_codes.size(), 1u);
  EXPECT_EQ(out.python_codes[0].key, 0xabcu);
  EXPECT_EQ(out.python_codes[0].first_line, 7);
  EXPECT_EQ(out.python_codes[0].filename, in.python_codes[0].filename);
  EXPECT_EQ(out.python_codes[0].linetable, in.python_codes[0].linetable);
  EXPECT_EQ(serialize_raw_dump(out), bytes);  // nothing lost, nothing added
}

TEST(RawDump, AnswerRoundTripAndRefusals) {
  RawAnswer in;
  in.unsuppressed_leaks = true;
  in.leak_text = "text";
  in.json = "{}\n";
  in.suppressed = {{7, "leak:known_*"}, {9, "libfoo"}};
  in.profile = std::string("\x1f\x8b\0binary", 9);
  const std::string bytes = serialize_raw_answer(in);
  RawAnswer out;
  std::string error;
  ASSERT_TRUE(parse_raw_answer(bytes, out, error)) << error;
  EXPECT_EQ(out.leak_text, "text");
  EXPECT_EQ(out.profile, in.profile);
  EXPECT_TRUE(out.unsuppressed_leaks);
  ASSERT_EQ(out.suppressed.size(), 2u);
  EXPECT_EQ(out.suppressed[1].stack_id, 9u);
  EXPECT_EQ(out.suppressed[0].pattern, "leak:known_*");
  for (size_t length = 0; length < bytes.size(); ++length) {
    EXPECT_FALSE(parse_raw_answer(bytes.substr(0, length), out, error)) << length;
    EXPECT_TRUE(one_line_reason(error));
  }
}

// Every prefix of a valid dump is refused: the header's total size says what is missing.
TEST(RawDump, EveryTruncationRefused) {
  const std::string bytes = serialize_raw_dump(sample());
  for (size_t length = 0; length < bytes.size(); ++length) {
    RawReport out;
    std::string error;
    EXPECT_FALSE(parse_raw_dump(std::string_view(bytes).substr(0, length), out, error)) << length;
    EXPECT_TRUE(one_line_reason(error)) << length;
  }
}

// A truncated dump whose header claims the truncated size: the sections themselves are checked.
TEST(RawDump, TruncationWithMatchingHeaderRefused) {
  const std::string bytes = serialize_raw_dump(sample());
  for (size_t length = 24; length < bytes.size(); ++length) {
    std::string cut = bytes.substr(0, length);
    const uint64_t total = length;
    std::memcpy(cut.data() + 16, &total, sizeof total);
    RawReport out;
    std::string error;
    EXPECT_FALSE(parse_raw_dump(cut, out, error)) << length;
    EXPECT_TRUE(one_line_reason(error)) << length;
  }
}

TEST(RawDump, BadReferencesRefused) {
  std::string error;
  RawReport out;
  RawReport r = sample();
  r.stacks[0].frames[0].module = 7;  // past the module map
  EXPECT_FALSE(parse_raw_dump(serialize_raw_dump(r), out, error));
  EXPECT_NE(error.find("module"), std::string::npos) << error;
  r = sample();
  r.scan.groups[0].stack_id = 99;  // a leak whose stack is not there
  EXPECT_FALSE(parse_raw_dump(serialize_raw_dump(r), out, error));
  EXPECT_TRUE(one_line_reason(error));
  r = sample();
  r.thread_sites[2].stack_id = 99;  // a profile's site whose stack is not there
  EXPECT_FALSE(parse_raw_dump(serialize_raw_dump(r), out, error));
  EXPECT_NE(error.find("thread's site"), std::string::npos) << error;
  r = sample();
  r.stacks[1].id = 1;  // one id twice
  EXPECT_FALSE(parse_raw_dump(serialize_raw_dump(r), out, error));
  r = sample();
  r.modules[0].low = r.modules[0].high + 1;
  EXPECT_FALSE(parse_raw_dump(serialize_raw_dump(r), out, error));
  // A count of four billion entries in a few bytes is refused before anything is allocated.
  const RawReport base = sample();
  std::string bytes = serialize_raw_dump(base);
  // header, pid and times, program, command line, summary, config: then the suppressions' count.
  const size_t suppressions_count =
      24 + 4 + 8 + 8 + (4 + base.program.size()) + (4 + base.command_line.size()) + 15 * 8 + 4 + 3 + 8;
  const uint32_t huge = UINT32_MAX;
  std::memcpy(bytes.data() + suppressions_count, &huge, sizeof huge);
  EXPECT_FALSE(parse_raw_dump(bytes, out, error));
  EXPECT_NE(error.find("impossible count"), std::string::npos) << error;
  // Another version is refused by name.
  bytes = serialize_raw_dump(sample());
  bytes[8] = 9;
  EXPECT_FALSE(parse_raw_dump(bytes, out, error));
  EXPECT_NE(error.find("version 9"), std::string::npos) << error;
}

// Random corruption: refused in one line, or read into a report that renders (every index valid).
TEST(RawDump, RandomCorruptionNeverCrashes) {
  std::mt19937_64 random(seed());
  SCOPED_TRACE("HEAPKEEPER_FUZZ_SEED=" + std::to_string(seed()));
  const std::string valid = serialize_raw_dump(sample());
  analysis::ModuleSymbolizer symbolizer;
  int accepted = 0;
  for (int i = 0, n = iterations(3000); i < n; ++i) {
    std::string bytes = valid;
    const int flips = 1 + static_cast<int>(random() % 8);
    for (int k = 0; k < flips; ++k) {
      // Leave the header alone half the time, so the sections themselves are exercised.
      const size_t from = (random() & 1) ? 24 : 0;
      bytes[from + random() % (bytes.size() - from)] = static_cast<char>(random());
    }
    RawReport out;
    std::string error;
    if (parse_raw_dump(bytes, out, error)) {
      ++accepted;
      out.flags = kWantJson | kWantLeakText | kWantProfile;
      const RawAnswer answer = analysis::render_answer(out, symbolizer);
      EXPECT_FALSE(answer.json.empty());
      EXPECT_FALSE(answer.profile.empty());
    } else {
      EXPECT_TRUE(one_line_reason(error));
    }
  }
  RecordProperty("accepted", accepted);
}

TEST(RawDump, RandomBuffersRefused) {
  std::mt19937_64 random(seed() + 1);
  SCOPED_TRACE("HEAPKEEPER_FUZZ_SEED=" + std::to_string(seed()));
  for (int i = 0, n = iterations(2000); i < n; ++i) {
    std::string bytes(random() % 512, '\0');
    for (char& c : bytes) c = static_cast<char>(random());
    if (random() & 1 && bytes.size() >= 8) std::memcpy(bytes.data(), &kRawDumpMagic, 8);  // past the magic
    RawReport out;
    std::string error;
    EXPECT_FALSE(parse_raw_dump(bytes, out, error));
    EXPECT_TRUE(one_line_reason(error));
  }
}

}  // namespace
}  // namespace heapkeeper::report
