// HEAPKEEPER_BASELINE's reader (analysis/leak_baseline.h) against baselines of the wrong shape: each
// is refused with one line, never with an exception (one escaping `heapkeeper symbolize` cost the
// program its whole exit report: no JSON report, frames unnamed).
#include "analysis/leak_baseline.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace heapkeeper::analysis {
namespace {

class LeakBaselineFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char name[] = "/tmp/hk_baseline_test.XXXXXX";
    const int fd = mkstemp(name);
    ASSERT_GE(fd, 0);
    ::close(fd);
    path_ = name;
  }
  void TearDown() override { ::unlink(path_.c_str()); }
  // Loads `text` as the baseline: whether it was taken, and the error when not.
  bool load(const std::string& text, std::string& error, LeakBaseline& baseline) {
    std::ofstream(path_) << text;
    return baseline.load(path_, error);
  }
  std::string path_;
};

TEST_F(LeakBaselineFile, ToolOfAnotherTypeIsRefusedInOneLine) {
  for (const char* tool : {"5", "null", "true", "1.5", "[]", "{\"a\": 1}", "\"other\""}) {
    LeakBaseline baseline;
    std::string error;
    bool loaded = true;
    EXPECT_NO_THROW(loaded = load(std::string("{\"tool\": ") + tool + ", \"leaks\": []}", error, baseline)) << tool;
    EXPECT_FALSE(loaded) << tool;
    EXPECT_NE(error.find("is not a heapkeeper JSON report"), std::string::npos) << tool << ": " << error;
    EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  }
}

TEST_F(LeakBaselineFile, LeaksAndStacksOfAnotherTypeAreSkipped) {
  LeakBaseline baseline;
  std::string error;
  bool loaded = false;
  EXPECT_NO_THROW(loaded =
                      load(R"({"tool": "heapkeeper", "leaks": [5, null, {"stack": 3}, {"stack": [1, {"function": 7}]},
                                   {"stack": [{"function": "leaky", "module": "/bin/x"}]}]})",
                           error, baseline));
  EXPECT_TRUE(loaded) << error;
  SymbolizedFrame frame;
  frame.function = "leaky";
  frame.module = "/bin/x";
  EXPECT_TRUE(baseline.knows({frame}));
}

TEST_F(LeakBaselineFile, NotAnObjectIsRefused) {
  for (const char* text : {"", "{", "[]", "5", "\"heapkeeper\"", "{\"tool\": \"heapkeeper\", \"leaks\": {}}"}) {
    LeakBaseline baseline;
    std::string error;
    bool loaded = true;
    EXPECT_NO_THROW(loaded = load(text, error, baseline)) << text;
    EXPECT_FALSE(loaded) << text;
  }
}

}  // namespace
}  // namespace heapkeeper::analysis
