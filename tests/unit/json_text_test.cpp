// Unit tests for the lossless JSON text convention (report/json_text.h): valid UTF-8 is kept as it
// is, every other byte becomes U+EF00 + byte, the result is always valid UTF-8 that nlohmann::json
// dumps and parses back, and decoding gives the exact original bytes, for every input.
#include "report/json_text.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>

namespace heapkeeper::report {
namespace {

std::string round_trip_through_json(const std::string& bytes) {
  nlohmann::json doc = {{"text", json_text(bytes)}};
  const std::string dumped = doc.dump();  // throws type_error 316 on invalid UTF-8
  return decode_json_text(nlohmann::json::parse(dumped)["text"].get<std::string>());
}

TEST(JsonText, ValidUtf8IsKeptAsItIs) {
  for (const std::string text : {"", "plain ascii", "caf\xc3\xa9", "\xe2\x82\xac 5", "\xf0\x9f\x98\x80", "\xef\xbf\xbd",
                                 "\xee\xbd\xbf" /* U+EF7F, just below the escapes */}) {
    EXPECT_EQ(json_text(text), text);
  }
}

TEST(JsonText, InvalidBytesBecomeEscapesAndComeBack) {
  EXPECT_EQ(json_text("r\xe9sum\xe9"), "r\xee\xbf\xa9sum\xee\xbf\xa9");  // 0xE9 -> U+EFE9
  EXPECT_EQ(json_text("\xff"), "\xee\xbf\xbf");
  EXPECT_EQ(json_text("\x80"), "\xee\xbe\x80");
  for (const std::string bytes : {"r\xe9sum\xe9.txt", "cut\xe2\x82", "\xc0\xaf" /* overlong '/' */,
                                  "\xed\xa0\x80" /* a surrogate */, "\xf4\x90\x80\x80" /* above U+10FFFF */}) {
    EXPECT_EQ(decode_json_text(json_text(bytes)), bytes);
    EXPECT_EQ(round_trip_through_json(bytes), bytes);
  }
}

TEST(JsonText, TheEscapeCodePointsThemselvesAreEscaped) {
  const std::string u_ef81 = "\xee\xbe\x81";  // valid UTF-8 for U+EF81, which means the byte 0x81
  const std::string encoded = json_text(u_ef81);
  EXPECT_NE(encoded, u_ef81);
  EXPECT_EQ(encoded.size(), 9u);  // three escaped bytes
  EXPECT_EQ(decode_json_text(encoded), u_ef81);
}

TEST(JsonText, EveryRandomByteStringRoundTripsThroughNlohmann) {
  std::mt19937 random(12345);
  for (int i = 0; i < 20000; ++i) {
    std::string bytes(random() % 24, '\0');
    for (char& c : bytes) {
      // Mostly high bytes and the lead/continuation bytes of UTF-8, where the edge cases are.
      const unsigned pick = random() % 4;
      c = static_cast<char>(pick == 0 ? random() % 128 : pick == 1 ? 0xEE + random() % 2 : 0x80 + random() % 128);
    }
    ASSERT_EQ(round_trip_through_json(bytes), bytes) << "input #" << i;
  }
}

TEST(JsonText, PrintableFormShowsEscapedBytesAndControlsAsHex) {
  EXPECT_EQ(printable_json_text(json_text("r\xe9sum\xe9")), "r\\xe9sum\\xe9");
  EXPECT_EQ(printable_json_text(json_text("bell\a")), "bell\\x07");
  EXPECT_EQ(printable_json_text("caf\xc3\xa9"), "caf\xc3\xa9");
}

}  // namespace
}  // namespace heapkeeper::report
