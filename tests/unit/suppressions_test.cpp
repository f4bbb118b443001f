// Unit tests for LeakSanitizer-style suppression files (collector/suppressions.h): what a line
// suppresses, and the lines that refuse the whole file in one line naming the file and line.
#include "collector/suppressions.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace heapkeeper::collect {
namespace {

class SuppressionsFile : public testing::Test {
 protected:
  void SetUp() override {
    char name[] = "/tmp/heapkeeper-suppressions-test.XXXXXX";
    const int fd = mkstemp(name);
    ASSERT_GE(fd, 0);
    close(fd);
    path_ = name;
  }
  void TearDown() override { std::remove(path_.c_str()); }

  // Writes `text` (any bytes) as the file and loads it into `suppressions`; returns load's error.
  std::string load(const std::string& text, Suppressions& suppressions, bool& loaded) {
    FILE* file = std::fopen(path_.c_str(), "wb");
    EXPECT_NE(file, nullptr);
    if (file == nullptr) return "cannot write the test file";
    std::fwrite(text.data(), 1, text.size(), file);
    std::fclose(file);
    std::string error;
    loaded = suppressions.load(path_, error);
    return error;
  }

  std::string path_;
};

TEST_F(SuppressionsFile, LeakLinesAreKeptOtherTypesAndCommentsSkipped) {
  Suppressions suppressions;
  bool loaded = false;
  const std::string error =
      load("# comment\n\nleak:cache_fill\n  leak: ^main$ \r\nthread:race_here\nleak:\n", suppressions, loaded);
  EXPECT_TRUE(loaded) << error;
  EXPECT_EQ(suppressions.patterns(), (std::vector<std::string>{"cache_fill", "^main$"}));
  EXPECT_NE(suppressions.match("Cache::cache_fill_slow"), nullptr);
  EXPECT_NE(suppressions.match("main"), nullptr);
  EXPECT_EQ(suppressions.match("domain"), nullptr);
}

TEST_F(SuppressionsFile, ALineWithoutAColonRefusesTheFile) {
  Suppressions suppressions;
  bool loaded = true;
  const std::string error = load("leak:kept_before\nnot a suppression\n", suppressions, loaded);
  EXPECT_FALSE(loaded);
  EXPECT_EQ(error, path_ + ":2: expected TYPE:PATTERN, e.g. leak:my_function");
  EXPECT_TRUE(suppressions.empty()) << "a refused file suppresses nothing, not its first lines";
}

// "LEAK:main" or "leaks:main" suppressed nothing and said nothing (found by an adversarial tester);
// other sanitizers' types, which a shared file holds, are still skipped.
TEST_F(SuppressionsFile, AnUnknownTypeRefusesTheFile) {
  for (const std::string type : {"LEAK", "leaks", "foo", ""}) {
    SCOPED_TRACE(type);
    Suppressions suppressions;
    bool loaded = true;
    const std::string error = load("leak:first\n" + type + ":main\n", suppressions, loaded);
    EXPECT_FALSE(loaded);
    EXPECT_EQ(error, path_ + ":2: unknown suppression type \"" + type +
                         "\" (heapkeeper reads leak:PATTERN; other sanitizers' types are skipped)");
    EXPECT_TRUE(suppressions.empty());
  }
  Suppressions suppressions;
  bool loaded = false;
  const std::string error =
      load("race:a\ncalled_from_lib:libfoo.so\nsigned-integer-overflow:b\nleak:kept\n", suppressions, loaded);
  EXPECT_TRUE(loaded) << error;
  EXPECT_EQ(suppressions.patterns(), (std::vector<std::string>{"kept"}));
}

// A NUL byte made a pattern that matched no name ("leak:fo\0o"), or a type that was not "leak"
// ("le\0ak:foo"): the suppression was silently lost (found by an adversarial tester).
TEST_F(SuppressionsFile, ALineWithANulByteRefusesTheFile) {
  for (const std::string& line : {std::string("leak:fo\0o", 9), std::string("le\0ak:foo", 9),
                                  std::string("leak:foo\0", 9), std::string("# a comment\0", 12)}) {
    SCOPED_TRACE(testing::PrintToString(line));
    Suppressions suppressions;
    bool loaded = true;
    const std::string error = load("leak:first\n" + line + "\nleak:third\n", suppressions, loaded);
    EXPECT_FALSE(loaded);
    EXPECT_EQ(error, path_ + ":2: a NUL byte in the line (a suppressions file is text)");
    EXPECT_EQ(error.find('\n'), std::string::npos);
    EXPECT_TRUE(suppressions.empty());
  }
}

}  // namespace
}  // namespace heapkeeper::collect
