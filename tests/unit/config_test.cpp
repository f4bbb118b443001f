// Unit tests for heapkeeper's settings (allocator/config.h): the allocation-free parsers of
// durations, byte sizes and numbers, the report-path pattern, and reading HEAPKEEPER_* from the
// environment, where every invalid value keeps its default and is named in one warning line.
#include "allocator/config.h"
#include "allocator/diagnostics.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

namespace heapkeeper::alloc {
namespace {

constexpr const char* kVariables[] = {
    "HEAPKEEPER_STACK_DEPTH",   "HEAPKEEPER_FREE_STACKS",  "HEAPKEEPER_ON_BAD_FREE",  "HEAPKEEPER_MODE",
    "HEAPKEEPER_SCAN_INTERVAL", "HEAPKEEPER_HEAP_RESERVE", "HEAPKEEPER_ARENAS",       "HEAPKEEPER_EXITCODE",
    "HEAPKEEPER_QUIET",         "HEAPKEEPER_REPORT",       "HEAPKEEPER_SUPPRESSIONS", "HEAPKEEPER_LOG_PATH",
    "HEAPKEEPER_TRIM",          "HEAPKEEPER_STATS",        "HEAPKEEPER_RETAINED",     "HEAPKEEPER_PYTHON",
    "HEAPKEEPER_STOP_METHOD",   "HEAPKEEPER_PPROF",        "HEAPKEEPER_BASELINE",     "HEAPKEEPER_STATS_DELAY"};

// ---------------------------------------------------------------------------------------------
// parse_duration_ms

uint64_t duration_or_sentinel(const char* text) {
  uint64_t ms = 0xdead;
  return parse_duration_ms(text, ms) ? ms : 0xdead;
}

TEST(ParseDuration, UnitsAndBareSeconds) {
  EXPECT_EQ(duration_or_sentinel("0"), 0u);
  EXPECT_EQ(duration_or_sentinel("0ms"), 0u);
  EXPECT_EQ(duration_or_sentinel("10"), 10'000u);
  EXPECT_EQ(duration_or_sentinel("10s"), 10'000u);
  EXPECT_EQ(duration_or_sentinel("250ms"), 250u);
  EXPECT_EQ(duration_or_sentinel("2m"), 120'000u);
  EXPECT_EQ(duration_or_sentinel("2min"), 120'000u);
  EXPECT_EQ(duration_or_sentinel("3h"), 10'800'000u);
  EXPECT_EQ(duration_or_sentinel("007s"), 7'000u);
}

TEST(ParseDuration, RejectsMalformedTextAndLeavesTheOutputAlone) {
  for (const char* text : {"", "s", "ms", "-1", "+1", " 10", "10 ", "10 s", "1.5s", "10x", "10S", "10sec", "10mss",
                           "0x10", "1e3", "10m0s"}) {
    uint64_t ms = 0xdead;
    EXPECT_FALSE(parse_duration_ms(text, ms)) << '"' << text << '"';
    EXPECT_EQ(ms, 0xdeadu) << '"' << text << '"';
  }
  uint64_t ms = 0xdead;
  EXPECT_FALSE(parse_duration_ms(nullptr, ms));
  EXPECT_EQ(ms, 0xdeadu);
}

TEST(ParseDuration, Overflow) {
  // The largest millisecond count is representable; anything that overflows after scaling is not.
  EXPECT_EQ(duration_or_sentinel("18446744073709551615ms"), UINT64_MAX);
  EXPECT_EQ(duration_or_sentinel("18446744073709551ms"), 18446744073709551u);
  EXPECT_EQ(duration_or_sentinel("18446744073709551"), 18446744073709551000u);
  uint64_t ms = 0xdead;
  EXPECT_FALSE(parse_duration_ms("18446744073709552", ms));       // x1000 overflows
  EXPECT_FALSE(parse_duration_ms("18446744073709551616ms", ms));  // the number itself overflows
  EXPECT_FALSE(parse_duration_ms("99999999999999999999999999s", ms));
  EXPECT_FALSE(parse_duration_ms("5124095576030432h", ms));
  EXPECT_EQ(ms, 0xdeadu);
}

// ---------------------------------------------------------------------------------------------
// parse_byte_size

uint64_t bytes_or_sentinel(const char* text) {
  uint64_t bytes = 0xdead;
  return parse_byte_size(text, bytes) ? bytes : 0xdead;
}

TEST(ParseByteSize, BinaryUnitsInBothCasesWithOptionalByteSuffix) {
  EXPECT_EQ(bytes_or_sentinel("0"), 0u);
  EXPECT_EQ(bytes_or_sentinel("4096"), 4096u);
  EXPECT_EQ(bytes_or_sentinel("1k"), 1024u);
  EXPECT_EQ(bytes_or_sentinel("1K"), 1024u);
  EXPECT_EQ(bytes_or_sentinel("512M"), uint64_t{512} << 20);
  EXPECT_EQ(bytes_or_sentinel("512m"), uint64_t{512} << 20);
  EXPECT_EQ(bytes_or_sentinel("64G"), uint64_t{64} << 30);
  EXPECT_EQ(bytes_or_sentinel("64g"), uint64_t{64} << 30);
  EXPECT_EQ(bytes_or_sentinel("1T"), uint64_t{1} << 40);
  EXPECT_EQ(bytes_or_sentinel("2t"), uint64_t{2} << 40);
  EXPECT_EQ(bytes_or_sentinel("64GB"), uint64_t{64} << 30);
  EXPECT_EQ(bytes_or_sentinel("64GiB"), uint64_t{64} << 30);
  EXPECT_EQ(bytes_or_sentinel("64Gb"), uint64_t{64} << 30);
  EXPECT_EQ(bytes_or_sentinel("0G"), 0u);
}

TEST(ParseByteSize, RejectsMalformedTextAndLeavesTheOutputAlone) {
  for (const char* text :
       {"", "G", "-1G", " 1G", "1G ", "1 G", "1.5G", "1X", "1P", "1E", "1KiBs", "1Gi", "1GIB", "1GBB", "0x10", "1kk"}) {
    uint64_t bytes = 0xdead;
    EXPECT_FALSE(parse_byte_size(text, bytes)) << '"' << text << '"';
    EXPECT_EQ(bytes, 0xdeadu) << '"' << text << '"';
  }
  uint64_t bytes = 0xdead;
  EXPECT_FALSE(parse_byte_size(nullptr, bytes));
  EXPECT_EQ(bytes, 0xdeadu);
}

TEST(ParseByteSize, Overflow) {
  EXPECT_EQ(bytes_or_sentinel("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(bytes_or_sentinel("16777215T"), uint64_t{16777215} << 40);
  EXPECT_EQ(bytes_or_sentinel("17179869183G"), uint64_t{17179869183} << 30);
  uint64_t bytes = 0xdead;
  EXPECT_FALSE(parse_byte_size("16777216T", bytes));  // 2^64
  EXPECT_FALSE(parse_byte_size("17179869184G", bytes));
  EXPECT_FALSE(parse_byte_size("18014398509481984K", bytes));
  EXPECT_FALSE(parse_byte_size("18446744073709551616", bytes));
  EXPECT_EQ(bytes, 0xdeadu);
}

// ---------------------------------------------------------------------------------------------
// parse_unsigned

TEST(ParseUnsigned, DecimalDigitsOnlyUpToUint64Max) {
  uint64_t value = 0;
  EXPECT_TRUE(parse_unsigned("0", value));
  EXPECT_EQ(value, 0u);
  EXPECT_TRUE(parse_unsigned("123", value));
  EXPECT_EQ(value, 123u);
  EXPECT_TRUE(parse_unsigned("000042", value));
  EXPECT_EQ(value, 42u);
  EXPECT_TRUE(parse_unsigned("18446744073709551615", value));
  EXPECT_EQ(value, UINT64_MAX);
  for (const char* text :
       {"", "-1", "+1", " 1", "1 ", "1k", "0x10", "1.0", "18446744073709551616", "99999999999999999999"}) {
    value = 0xdead;
    EXPECT_FALSE(parse_unsigned(text, value)) << '"' << text << '"';
    EXPECT_EQ(value, 0xdeadu) << '"' << text << '"';
  }
  value = 0xdead;
  EXPECT_FALSE(parse_unsigned(nullptr, value));
  EXPECT_EQ(value, 0xdeadu);
}

// ---------------------------------------------------------------------------------------------
// expand_pid_pattern

std::string expand(const char* pattern, int pid, size_t capacity = 256) {
  char out[256];
  std::memset(out, '#', sizeof(out));
  if (!expand_pid_pattern(pattern, pid, out, capacity)) return "<does not fit>";
  return out;
}

TEST(ExpandPidPattern, ReplacesEveryPercentP) {
  EXPECT_EQ(expand("heapkeeper-%p.json", 1234), "heapkeeper-1234.json");
  EXPECT_EQ(expand("%p", 7), "7");
  EXPECT_EQ(expand("%p/%p", 0), "0/0");
  EXPECT_EQ(expand("/tmp/report.json", 99), "/tmp/report.json");
  EXPECT_EQ(expand("", 99), "");
  EXPECT_EQ(expand("pid%p", 2147483647), "pid2147483647");
}

TEST(ExpandPidPattern, OtherPercentSequencesAreCopied) {
  EXPECT_EQ(expand("100%", 5), "100%");
  EXPECT_EQ(expand("%d-%P-%%", 5), "%d-%P-%%");
  EXPECT_EQ(expand("%%p", 5), "%5");  // no escape for a literal "%p": the second '%' starts one
}

TEST(ExpandPidPattern, CapacityCountsTheTerminator) {
  EXPECT_EQ(expand("a%p", 12, 4), "a12");
  EXPECT_EQ(expand("a%p", 12, 3), "<does not fit>");
  EXPECT_EQ(expand("abc", 12, 4), "abc");
  EXPECT_EQ(expand("abc", 12, 3), "<does not fit>");
  EXPECT_EQ(expand("", 12, 1), "");
}

TEST(ExpandPidPattern, ZeroCapacityWritesNothing) {
  char out[4] = {'#', '#', '#', '#'};
  EXPECT_FALSE(expand_pid_pattern("", 1, out, 0));
  EXPECT_FALSE(expand_pid_pattern("x", 1, out, 0));
  EXPECT_EQ(out[0], '#') << "expand_pid_pattern wrote into a zero-byte buffer";
}

TEST(ExpandPidPattern, DoesNotWritePastCapacityWhenItFails) {
  char out[16];
  std::memset(out, '#', sizeof(out));
  EXPECT_FALSE(expand_pid_pattern("abcdef%p", 123456, out, 8));
  for (size_t i = 8; i < sizeof(out); ++i) EXPECT_EQ(out[i], '#') << i;
}

// ---------------------------------------------------------------------------------------------
// load_config_from_environment

class LoadConfig : public testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : kVariables) unsetenv(name);
  }
  void TearDown() override {
    for (const char* name : kVariables) unsetenv(name);
  }

  // Loads a fresh Config with only `name`=`value` set; returns what was written to stderr.
  std::string load_with(const char* name, const char* value, Config& config) {
    setenv(name, value, 1);
    testing::internal::CaptureStderr();
    load_config_from_environment(config);
    std::string err = testing::internal::GetCapturedStderr();
    unsetenv(name);
    return err;
  }
};

void expect_same(const Config& a, const Config& b) {
  EXPECT_EQ(a.stack_depth, b.stack_depth);
  EXPECT_EQ(a.free_stacks, b.free_stacks);
  EXPECT_EQ(a.on_bad_free, b.on_bad_free);
  EXPECT_EQ(a.mode, b.mode);
  EXPECT_EQ(a.scan_interval_ms, b.scan_interval_ms);
  EXPECT_EQ(a.heap_reserve_bytes, b.heap_reserve_bytes);
  EXPECT_EQ(a.arenas, b.arenas);
  EXPECT_EQ(a.exit_code, b.exit_code);
  EXPECT_EQ(a.quiet, b.quiet);
  EXPECT_EQ(a.trim, b.trim);
  EXPECT_EQ(a.stop_method, b.stop_method);
  EXPECT_EQ(a.stats_delay_ms, b.stats_delay_ms);
  EXPECT_STREQ(a.report_path, b.report_path);
  EXPECT_STREQ(a.suppressions_path, b.suppressions_path);
  EXPECT_STREQ(a.log_path, b.log_path);
}

std::string current_directory() {
  char directory[4096];
  return getcwd(directory, sizeof(directory)) != nullptr ? directory : "?";
}

TEST_F(LoadConfig, EmptyEnvironmentKeepsEveryDefaultSilently) {
  Config config;
  testing::internal::CaptureStderr();
  load_config_from_environment(config);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  expect_same(config, Config{});
  EXPECT_GE(config.stack_depth, 1);
  EXPECT_LE(config.stack_depth, Config::kMaxStackDepth);
  EXPECT_EQ(config.report_path[0], '\0');
  EXPECT_EQ(config.suppressions_path[0], '\0');
}

// The warning says which default is used instead; it must be the one Config really has (the
// defaults live in config.h, the messages in config.cpp, and they can drift apart).
TEST_F(LoadConfig, WarningStatesTheDefaultThatIsActuallyUsed) {
  const Config defaults;
  auto on_off = [](bool value) { return std::string(value ? "1" : "0"); };
  auto policy = [](BadFreePolicy p) { return std::string(p == BadFreePolicy::kAbort ? "abort" : "continue"); };
  auto mode = [](CollectorMode m) {
    return std::string(m == CollectorMode::kOff ? "off" : m == CollectorMode::kDetect ? "detect" : "collect");
  };
  const std::pair<const char*, std::string> cases[] = {
      {"HEAPKEEPER_STACK_DEPTH", std::to_string(defaults.stack_depth)},
      {"HEAPKEEPER_FREE_STACKS", on_off(defaults.free_stacks)},
      {"HEAPKEEPER_ON_BAD_FREE", policy(defaults.on_bad_free)},
      {"HEAPKEEPER_MODE", mode(defaults.mode)},
      {"HEAPKEEPER_SCAN_INTERVAL", std::to_string(defaults.scan_interval_ms)},
      {"HEAPKEEPER_EXITCODE", std::to_string(defaults.exit_code)},
      {"HEAPKEEPER_QUIET", on_off(defaults.quiet)},
      {"HEAPKEEPER_TRIM", defaults.trim == TrimPolicy::kAuto ? "auto" : "off"},
      {"HEAPKEEPER_STATS", on_off(defaults.live_stats)},
      {"HEAPKEEPER_RETAINED", on_off(defaults.retained)},
      {"HEAPKEEPER_PYTHON", on_off(defaults.python)},
      {"HEAPKEEPER_STOP_METHOD", defaults.stop_method == StopMethod::kPtrace ? "ptrace" : "signals"},
  };
  for (const auto& [name, expected_default] : cases) {
    SCOPED_TRACE(name);
    Config config;
    const std::string err = load_with(name, "not-a-valid-value", config);
    const std::string marker = "using the default ";
    const size_t at = err.find(marker);
    ASSERT_NE(at, std::string::npos) << err;
    std::string stated = err.substr(at + marker.size());
    stated = stated.substr(0, stated.find_first_of(" \n"));
    EXPECT_EQ(stated, expected_default) << err;
  }
}

TEST_F(LoadConfig, ValidValuesAreTakenWithoutWarnings) {
  struct Case {
    const char* name;
    const char* value;
    void (*check)(const Config&);
  };
  const Case cases[] = {
      {"HEAPKEEPER_STACK_DEPTH", "1", [](const Config& c) { EXPECT_EQ(c.stack_depth, 1); }},
      {"HEAPKEEPER_STACK_DEPTH", "128", [](const Config& c) { EXPECT_EQ(c.stack_depth, 128); }},
      {"HEAPKEEPER_STACK_DEPTH", "64", [](const Config& c) { EXPECT_EQ(c.stack_depth, 64); }},
      {"HEAPKEEPER_FREE_STACKS", "0", [](const Config& c) { EXPECT_FALSE(c.free_stacks); }},
      {"HEAPKEEPER_FREE_STACKS", "no", [](const Config& c) { EXPECT_FALSE(c.free_stacks); }},
      {"HEAPKEEPER_FREE_STACKS", "false", [](const Config& c) { EXPECT_FALSE(c.free_stacks); }},
      {"HEAPKEEPER_FREE_STACKS", "1", [](const Config& c) { EXPECT_TRUE(c.free_stacks); }},
      {"HEAPKEEPER_FREE_STACKS", "yes", [](const Config& c) { EXPECT_TRUE(c.free_stacks); }},
      {"HEAPKEEPER_FREE_STACKS", "true", [](const Config& c) { EXPECT_TRUE(c.free_stacks); }},
      {"HEAPKEEPER_ON_BAD_FREE", "continue",
       [](const Config& c) { EXPECT_EQ(c.on_bad_free, BadFreePolicy::kContinue); }},
      {"HEAPKEEPER_ON_BAD_FREE", "abort", [](const Config& c) { EXPECT_EQ(c.on_bad_free, BadFreePolicy::kAbort); }},
      {"HEAPKEEPER_MODE", "off", [](const Config& c) { EXPECT_EQ(c.mode, CollectorMode::kOff); }},
      {"HEAPKEEPER_MODE", "detect", [](const Config& c) { EXPECT_EQ(c.mode, CollectorMode::kDetect); }},
      {"HEAPKEEPER_MODE", "collect", [](const Config& c) { EXPECT_EQ(c.mode, CollectorMode::kCollect); }},
      {"HEAPKEEPER_SCAN_INTERVAL", "500ms", [](const Config& c) { EXPECT_EQ(c.scan_interval_ms, 500u); }},
      {"HEAPKEEPER_SCAN_INTERVAL", "10s", [](const Config& c) { EXPECT_EQ(c.scan_interval_ms, 10'000u); }},
      {"HEAPKEEPER_SCAN_INTERVAL", "0", [](const Config& c) { EXPECT_EQ(c.scan_interval_ms, 0u); }},
      {"HEAPKEEPER_STATS_DELAY", "0", [](const Config& c) { EXPECT_EQ(c.stats_delay_ms, 0); }},
      {"HEAPKEEPER_STATS_DELAY", "750ms", [](const Config& c) { EXPECT_EQ(c.stats_delay_ms, 750); }},
      {"HEAPKEEPER_STATS_DELAY", "24h", [](const Config& c) { EXPECT_EQ(c.stats_delay_ms, 86'400'000); }},
      {"HEAPKEEPER_HEAP_RESERVE", "64G", [](const Config& c) { EXPECT_EQ(c.heap_reserve_bytes, uint64_t{64} << 30); }},
      {"HEAPKEEPER_HEAP_RESERVE", "1G", [](const Config& c) { EXPECT_EQ(c.heap_reserve_bytes, uint64_t{1} << 30); }},
      {"HEAPKEEPER_HEAP_RESERVE", "64T", [](const Config& c) { EXPECT_EQ(c.heap_reserve_bytes, uint64_t{64} << 40); }},
      {"HEAPKEEPER_HEAP_RESERVE", "1024M", [](const Config& c) { EXPECT_EQ(c.heap_reserve_bytes, uint64_t{1} << 30); }},
      {"HEAPKEEPER_ARENAS", "1", [](const Config& c) { EXPECT_EQ(c.arenas, 1u); }},
      {"HEAPKEEPER_ARENAS", "64", [](const Config& c) { EXPECT_EQ(c.arenas, 64u); }},
      {"HEAPKEEPER_EXITCODE", "0", [](const Config& c) { EXPECT_EQ(c.exit_code, 0); }},
      {"HEAPKEEPER_EXITCODE", "23", [](const Config& c) { EXPECT_EQ(c.exit_code, 23); }},
      {"HEAPKEEPER_EXITCODE", "255", [](const Config& c) { EXPECT_EQ(c.exit_code, 255); }},
      {"HEAPKEEPER_QUIET", "1", [](const Config& c) { EXPECT_TRUE(c.quiet); }},
      {"HEAPKEEPER_QUIET", "0", [](const Config& c) { EXPECT_FALSE(c.quiet); }},
      {"HEAPKEEPER_STOP_METHOD", "signals", [](const Config& c) { EXPECT_EQ(c.stop_method, StopMethod::kSignals); }},
      {"HEAPKEEPER_STOP_METHOD", "ptrace", [](const Config& c) { EXPECT_EQ(c.stop_method, StopMethod::kPtrace); }},
      {"HEAPKEEPER_TRIM", "off", [](const Config& c) { EXPECT_EQ(c.trim, TrimPolicy::kOff); }},
      {"HEAPKEEPER_TRIM", "auto", [](const Config& c) { EXPECT_EQ(c.trim, TrimPolicy::kAuto); }},
      {"HEAPKEEPER_REPORT", "/tmp/heapkeeper-%p.json",
       [](const Config& c) { EXPECT_STREQ(c.report_path, "/tmp/heapkeeper-%p.json"); }},
      {"HEAPKEEPER_SUPPRESSIONS", "/etc/heapkeeper.supp",
       [](const Config& c) { EXPECT_STREQ(c.suppressions_path, "/etc/heapkeeper.supp"); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.name) + "=" + c.value);
    Config config;
    EXPECT_EQ(load_with(c.name, c.value, config), "");
    c.check(config);
  }
}

TEST_F(LoadConfig, AllValidValuesTogether) {
  setenv("HEAPKEEPER_STACK_DEPTH", "8", 1);
  setenv("HEAPKEEPER_FREE_STACKS", "0", 1);
  setenv("HEAPKEEPER_ON_BAD_FREE", "continue", 1);
  setenv("HEAPKEEPER_MODE", "collect", 1);
  setenv("HEAPKEEPER_SCAN_INTERVAL", "2m", 1);
  setenv("HEAPKEEPER_HEAP_RESERVE", "2T", 1);
  setenv("HEAPKEEPER_ARENAS", "3", 1);
  setenv("HEAPKEEPER_EXITCODE", "42", 1);
  setenv("HEAPKEEPER_QUIET", "1", 1);
  setenv("HEAPKEEPER_REPORT", "r.json", 1);
  setenv("HEAPKEEPER_SUPPRESSIONS", "s.supp", 1);
  Config config;
  testing::internal::CaptureStderr();
  load_config_from_environment(config);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(config.stack_depth, 8);
  EXPECT_FALSE(config.free_stacks);
  EXPECT_EQ(config.on_bad_free, BadFreePolicy::kContinue);
  EXPECT_EQ(config.mode, CollectorMode::kCollect);
  EXPECT_EQ(config.scan_interval_ms, 120'000u);
  EXPECT_EQ(config.heap_reserve_bytes, uint64_t{2} << 40);
  EXPECT_EQ(config.arenas, 3u);
  EXPECT_EQ(config.exit_code, 42);
  EXPECT_TRUE(config.quiet);
  // Relative paths are made absolute at start-up: the program may change directory before exit.
  EXPECT_EQ(std::string(config.report_path), current_directory() + "/r.json");
  EXPECT_EQ(std::string(config.suppressions_path), current_directory() + "/s.supp");
}

TEST_F(LoadConfig, RelativePathsAreResolvedWhereTheProgramStarts) {
  setenv("HEAPKEEPER_REPORT", "reports/r.%p.json", 1);
  setenv("HEAPKEEPER_LOG_PATH", "log.%p", 1);
  Config config;
  testing::internal::CaptureStderr();
  load_config_from_environment(config);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(std::string(config.report_path), current_directory() + "/reports/r.%p.json");
  EXPECT_EQ(std::string(config.log_path), current_directory() + "/log.%p");
  setenv("HEAPKEEPER_LOG_PATH", "stderr", 1);  // LeakSanitizer's name for the default
  Config with_stderr;
  load_config_from_environment(with_stderr);
  EXPECT_EQ(with_stderr.log_path[0], '\0');
}

TEST(ResolveAgainstCwd, AbsoluteUnchangedRelativeJoinedTooLongRefused) {
  char path[64] = "/already/absolute";
  EXPECT_TRUE(resolve_against_cwd(path, sizeof(path)));
  EXPECT_STREQ(path, "/already/absolute");
  char relative[4096] = "x.json";
  EXPECT_TRUE(resolve_against_cwd(relative, sizeof(relative)));
  EXPECT_EQ(std::string(relative), current_directory() + "/x.json");
  char small[4] = "abc";
  EXPECT_FALSE(resolve_against_cwd(small, sizeof(small)));
  EXPECT_STREQ(small, "abc");
}

TEST_F(LoadConfig, InvalidValuesKeepTheDefaultAndWarnOnceNamingTheVariable) {
  const std::string long_path(5000, 'p');
  const std::pair<const char*, std::string> cases[] = {
      {"HEAPKEEPER_STACK_DEPTH", "0"},
      {"HEAPKEEPER_STACK_DEPTH", "129"},
      {"HEAPKEEPER_STACK_DEPTH", "deep"},
      {"HEAPKEEPER_STACK_DEPTH", ""},
      {"HEAPKEEPER_STACK_DEPTH", "-1"},
      {"HEAPKEEPER_STACK_DEPTH", "99999999999999999999999"},
      {"HEAPKEEPER_FREE_STACKS", "maybe"},
      {"HEAPKEEPER_FREE_STACKS", "2"},
      {"HEAPKEEPER_FREE_STACKS", ""},
      {"HEAPKEEPER_ON_BAD_FREE", "ignore"},
      {"HEAPKEEPER_ON_BAD_FREE", "ABORT"},
      {"HEAPKEEPER_MODE", "on"},
      {"HEAPKEEPER_MODE", ""},
      {"HEAPKEEPER_SCAN_INTERVAL", "10x"},
      {"HEAPKEEPER_SCAN_INTERVAL", "-5s"},
      {"HEAPKEEPER_SCAN_INTERVAL", "soon"},
      {"HEAPKEEPER_STATS_DELAY", "25h"},
      {"HEAPKEEPER_STATS_DELAY", "-1"},
      {"HEAPKEEPER_STATS_DELAY", ""},
      {"HEAPKEEPER_STATS_DELAY", "later"},
      {"HEAPKEEPER_HEAP_RESERVE", "512M"},
      {"HEAPKEEPER_HEAP_RESERVE", "65T"},
      {"HEAPKEEPER_HEAP_RESERVE", "huge"},
      {"HEAPKEEPER_HEAP_RESERVE", "0"},
      {"HEAPKEEPER_ARENAS", "0"},
      {"HEAPKEEPER_ARENAS", "65"},
      {"HEAPKEEPER_ARENAS", "four"},
      {"HEAPKEEPER_EXITCODE", "256"},
      {"HEAPKEEPER_EXITCODE", "-1"},
      {"HEAPKEEPER_QUIET", "2"},
      {"HEAPKEEPER_QUIET", "yes"},
      {"HEAPKEEPER_STOP_METHOD", "magic"},
      {"HEAPKEEPER_STOP_METHOD", "PTRACE"},
      {"HEAPKEEPER_TRIM", "0"},
      {"HEAPKEEPER_TRIM", "never"},
      {"HEAPKEEPER_TRIM", ""},
      {"HEAPKEEPER_REPORT", long_path},
      {"HEAPKEEPER_SUPPRESSIONS", long_path},
      {"HEAPKEEPER_LOG_PATH", long_path},
  };
  const std::string prefix = "heapkeeper[" + std::to_string(getpid()) + "]: ";
  for (const auto& [name, value] : cases) {
    SCOPED_TRACE(std::string(name) + "='" + value.substr(0, 40) + "'");
    Config config;
    const std::string err = load_with(name, value.c_str(), config);
    expect_same(config, Config{});
    EXPECT_NE(err.find(name), std::string::npos) << err;
    EXPECT_NE(err.find("using the default"), std::string::npos) << err;
    EXPECT_EQ(err.rfind(prefix, 0), 0u) << err;
    ASSERT_FALSE(err.empty());
    EXPECT_EQ(err.back(), '\n');
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
}

// Set but empty is as bad as any other invalid value (HEAPKEEPER_STOP_METHOD= was taken silently as
// unset, found by an adversarial tester), except for a path: there it means no file (the log:
// stderr), as if unset, which is how a shell turns off a value the environment carries.
TEST_F(LoadConfig, AnEmptyValueIsInvalidExceptForAPath) {
  for (const char* name : kVariables) {
    SCOPED_TRACE(name);
    const std::string variable = name;
    const bool path = variable == "HEAPKEEPER_REPORT" || variable == "HEAPKEEPER_PPROF" ||
                      variable == "HEAPKEEPER_SUPPRESSIONS" || variable == "HEAPKEEPER_BASELINE" ||
                      variable == "HEAPKEEPER_LOG_PATH";
    Config config;
    const std::string err = load_with(name, "", config);
    expect_same(config, Config{});
    EXPECT_EQ(config.pprof_path[0], '\0');
    EXPECT_EQ(config.baseline_path[0], '\0');
    if (path) {
      EXPECT_EQ(err, "");
    } else {
      const std::string start = "heapkeeper[" + std::to_string(getpid()) + "]: invalid " + variable + "='' (expected ";
      EXPECT_EQ(err.rfind(start, 0), 0u) << err;
      EXPECT_NE(err.find("; using the default "), std::string::npos) << err;
      EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    }
  }
}

// The warning is one line whatever the value holds: control characters are shown escaped, and a
// value of kilobytes is cut (HEAPKEEPER_PYTHON=$'1\n2' printed two lines, 5,000 bytes one of 1 KiB).
TEST_F(LoadConfig, AnInvalidValueIsShownOnOneShortLine) {
  Config config;
  std::string err = load_with("HEAPKEEPER_PYTHON", "1\n2\t\x1b[31m", config);
  EXPECT_EQ(err, "heapkeeper[" + std::to_string(getpid()) +
                     "]: invalid HEAPKEEPER_PYTHON='1\\n2\\t\\x1b[31m' (expected 0 or 1); using the default 1\n");
  err = load_with("HEAPKEEPER_MODE", std::string(5000, 'a').c_str(), config);
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_NE(err.find("='" + std::string(64, 'a') + "...' (expected"), std::string::npos) << err;
  EXPECT_LT(err.size(), 200u) << err;
}

// Bytes from 0x80 are escaped as well (they were printed raw: 0x9b is a terminal's CSI where 8-bit
// controls are on, found by an adversarial tester), UTF-8 included, and a backslash is doubled so
// that a typed "\x1b" is not shown as an escaped ESC. Only the warning: the value is not changed.
TEST_F(LoadConfig, HighAndControlBytesOfAnInvalidValueAreShownEscaped) {
  Config config;
  const std::string err = load_with("HEAPKEEPER_TRIM",
                                    "caf\xc3\xa9\x9b"
                                    "31m\x7f\\x1b\xff",
                                    config);
  EXPECT_EQ(err, "heapkeeper[" + std::to_string(getpid()) +
                     "]: invalid HEAPKEEPER_TRIM='caf\\xc3\\xa9\\x9b31m\\x7f\\\\x1b\\xff' (expected auto or off); "
                     "using the default auto\n");
  ASSERT_FALSE(err.empty());
  for (const char c : err.substr(0, err.size() - 1))
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "byte " << static_cast<int>(c) << " in " << err;
  // 64 bytes of 0xff: four times as many shown, then "...", still one line in the buffer.
  const std::string err_long = load_with("HEAPKEEPER_MODE", std::string(100, '\xff').c_str(), config);
  std::string shown;
  for (int i = 0; i < 64; ++i) shown += "\\xff";
  EXPECT_NE(err_long.find("='" + shown + "...' (expected"), std::string::npos) << err_long;
  EXPECT_EQ(std::count(err_long.begin(), err_long.end(), '\n'), 1) << err_long;
}

TEST_F(LoadConfig, AnInvalidValueDoesNotDisturbTheValidOnes) {
  setenv("HEAPKEEPER_STACK_DEPTH", "500", 1);
  setenv("HEAPKEEPER_MODE", "off", 1);
  setenv("HEAPKEEPER_ARENAS", "lots", 1);
  setenv("HEAPKEEPER_QUIET", "1", 1);
  Config config;
  testing::internal::CaptureStderr();
  load_config_from_environment(config);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(config.stack_depth, 24);
  EXPECT_EQ(config.mode, CollectorMode::kOff);
  EXPECT_EQ(config.arenas, 0u);
  EXPECT_TRUE(config.quiet);
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 2) << err;
  EXPECT_NE(err.find("HEAPKEEPER_STACK_DEPTH"), std::string::npos);
  EXPECT_NE(err.find("HEAPKEEPER_ARENAS"), std::string::npos);
}

// A value loaded earlier is not reset by a later invalid one: loading only ever overrides a
// field with a valid value (so the defaults a caller set stay in place).
TEST_F(LoadConfig, InvalidValueKeepsWhatTheConfigAlreadyHeld) {
  Config config;
  config.stack_depth = 7;
  config.arenas = 5;
  setenv("HEAPKEEPER_ARENAS", "0", 1);
  const std::string err = load_with("HEAPKEEPER_STACK_DEPTH", "0", config);
  EXPECT_EQ(config.stack_depth, 7);
  EXPECT_EQ(config.arenas, 5u);
  EXPECT_NE(err.find("HEAPKEEPER_STACK_DEPTH"), std::string::npos);
}

}  // namespace
}  // namespace heapkeeper::alloc

// A file name in a diagnostic (a report path built from HEAPKEEPER_REPORT, the log path) is
// escaped as an invalid value is: it printed raw, so HEAPKEEPER_REPORT=$'/x/\e]0;title\a/r.json'
// retitled the terminal of whoever read the "could not write" line. A long one keeps its start
// and end, escaped, and the line stays one line.
TEST(DiagnosticLinePath, IsShownEscapedAndShortened) {
  testing::internal::CaptureStderr();
  heapkeeper::alloc::DiagnosticLine()
      .text("could not write the report to ")
      .path("/tmp/\x1b]0;t\a/\x9b\\x/caf\xc3\xa9\n.json")
      .emit();
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "heapkeeper[" + std::to_string(getpid()) +
                     "]: could not write the report to /tmp/\\x1b]0;t\\x07/\\x9b\\\\x/caf\\xc3\\xa9\\n.json\n");
  testing::internal::CaptureStderr();
  const std::string long_name = "/start" + std::string(3000, '\x1b') + "end.json";
  heapkeeper::alloc::DiagnosticLine().path(long_name).text(": reason").emit();
  err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_NE(err.find("]: /start\\x1b"), std::string::npos) << err;
  for (const char c : err.substr(0, err.size() - 1))
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "byte " << static_cast<int>(c);
}
