// `why`'s request and raw answer (report/raw_why.h), the bytes between a traced process and the
// `heapkeeper` binary: an answer survives the round trip and is named by the renderer; every
// truncation and every single-byte corruption is refused with one line or read into an answer
// whose indexes are all valid (rendered to prove it); malformed requests are refused.
#include <gtest/gtest.h>

#include "analysis/module_symbolizer.h"
#include "analysis/why_renderer.h"
#include "report/raw_why.h"

namespace heapkeeper::report {
namespace {

RawWhy sample() {
  RawWhy why;
  why.blocks = 3;
  why.bytes = 192;
  why.retained_bytes = 256;
  why.stop_method = "ptrace";
  RawWhyPath global;
  global.root.kind = RawRootKind::kGlobal;
  global.root.word = 0x404040;
  global.root.module = 0;
  global.chain = {{0x7f0000001000, 64, 7}, {0x7f0000002000, 128, 8}};
  RawWhyPath stack;
  stack.root.kind = RawRootKind::kStack;
  stack.root.word = 0x7ffc00000040;
  stack.root.stack_pointer = 0x7ffc00000000;
  stack.root.thread = 1234;
  stack.root.holder_frames = {{0x401234, 0}, {0x1, kNoModule}};
  stack.chain = {{0x7f0000001000, 64, 7}};
  why.paths = {global, stack};
  RawModule module;
  module.path = "/nonexistent/prog";
  module.load_bias = 0x400000;
  module.low = 0x400000;
  module.high = 0x410000;
  why.modules = {module};
  why.stacks = {{7, {{0x401111, 0}}}, {8, {{0x401222, 0}, {0x2, kNoModule}}}};
  return why;
}

TEST(RawWhy, RoundTrip) {
  const RawWhy why = sample();
  RawWhy read;
  std::string error;
  ASSERT_TRUE(parse_raw_why(serialize_raw_why(why), read, error)) << error;
  EXPECT_EQ(read.retained_bytes, 256u);
  ASSERT_EQ(read.paths.size(), 2u);
  EXPECT_EQ(read.paths[1].root.thread, 1234);
  EXPECT_EQ(read.paths[1].root.holder_frames.size(), 2u);
  EXPECT_EQ(read.paths[0].chain[1].size, 128u);
  analysis::ModuleSymbolizer symbolizer;
  const nlohmann::json doc = analysis::render_why_json(read, {{"function", "f"}}, 0, symbolizer);
  EXPECT_EQ(doc["target"]["blocks"], 3);
  EXPECT_EQ(doc["paths"][0]["root"]["kind"], "global");
  EXPECT_EQ(doc["paths"][0]["root"]["offset"], 0x4040);
  EXPECT_EQ(doc["paths"][1]["root"]["kind"], "stack");
  EXPECT_EQ(doc["paths"][1]["root"]["offset"], 0x40);
  EXPECT_EQ(doc["paths"][1]["root"]["module"], "/nonexistent/prog");
}

TEST(RawWhy, TruncationsAndCorruptionsAreRefusedOrSafe) {
  const std::string bytes = serialize_raw_why(sample());
  analysis::ModuleSymbolizer symbolizer;
  for (size_t length = 0; length < bytes.size(); ++length) {
    RawWhy read;
    std::string error;
    EXPECT_FALSE(parse_raw_why(std::string_view(bytes).substr(0, length), read, error)) << length;
    EXPECT_FALSE(error.empty());
    EXPECT_EQ(error.find('\n'), std::string::npos);
  }
  for (size_t at = 0; at < bytes.size(); ++at) {
    for (const unsigned char value : {0x00, 0x01, 0x7f, 0xff}) {
      std::string corrupt = bytes;
      corrupt[at] = static_cast<char>(value);
      RawWhy read;
      std::string error;
      if (parse_raw_why(corrupt, read, error))
        analysis::render_why_json(read, {{"function", "f"}}, 0, symbolizer);  // every index valid
      else
        EXPECT_EQ(error.find('\n'), std::string::npos);
    }
  }
}

TEST(WhyRequest, RoundTripAndRefusals) {
  WhyRequest request;
  request.paths = 5;
  request.ranges = {{0x1000, 0x1010}, {0x2000, 0x2400}};
  WhyRequest read;
  std::string error;
  ASSERT_TRUE(parse_why_request(serialize_why_request(request), read, error)) << error;
  EXPECT_EQ(read.paths, 5u);
  EXPECT_EQ(read.ranges, request.ranges);
  request.ranges.clear();
  request.address = 0x7f0000001234;
  ASSERT_TRUE(parse_why_request(serialize_why_request(request), read, error)) << error;
  EXPECT_EQ(read.address, 0x7f0000001234u);
  request.stack_id = 77;
  ASSERT_TRUE(parse_why_request(serialize_why_request(request), read, error)) << error;
  EXPECT_EQ(read.stack_id, 77u);
  for (const char* bad : {"", "3", "0\naddress 10", "17\naddress 10", "3\naddress 0", "3\naddress zz", "3\nranges",
                          "3\nranges\n20 10", "3\nranges\n10", "3\nranges\n10 20 30", "3\nother 10", "3\naddress 10 x",
                          "3\nstack 0", "3\nstack x", "3\nstack 4294967296"}) {
    error.clear();
    EXPECT_FALSE(parse_why_request(bad, read, error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
}

}  // namespace
}  // namespace heapkeeper::report
