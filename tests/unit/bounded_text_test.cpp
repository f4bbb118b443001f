// allocator/bounded_text.h: text built in a fixed buffer, what the /proc paths, the symbolizer's
// socket path and every diagnostic line are made with.
#include "allocator/bounded_text.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace heapkeeper::alloc {
namespace {

TEST(BoundedText, BuildsStringsAndNumbers) {
  char buffer[64];
  BoundedText text(buffer, sizeof(buffer));
  text.text("/proc/").number(4321).text("/stat");
  EXPECT_STREQ(buffer, "/proc/4321/stat");
  EXPECT_TRUE(text.complete());
  EXPECT_EQ(text.size(), 15u);
}

TEST(BoundedText, WritesTheExtremes) {
  char buffer[64];
  BoundedText(buffer, sizeof(buffer)).number(0).text(" ").number(UINT64_MAX).text(" ").hex(0).text(" ").hex(UINT64_MAX);
  EXPECT_STREQ(buffer, "0 18446744073709551615 0 ffffffffffffffff");
  BoundedText(buffer, sizeof(buffer)).hex(0xdeadbeef);
  EXPECT_STREQ(buffer, "deadbeef");
}

TEST(BoundedText, KeepsWhatFitsAndSaysItDidNotAll) {
  char buffer[8];
  BoundedText text(buffer, sizeof(buffer));
  text.text("/tmp/").number(123456);
  EXPECT_FALSE(text.complete());
  EXPECT_STREQ(buffer, "/tmp/12");  // 7 characters and the terminating zero
  EXPECT_EQ(text.size(), 7u);
}

TEST(BoundedText, AnEmptyBufferStaysEmpty) {
  char buffer[1] = {'x'};
  BoundedText text(buffer, sizeof(buffer));
  text.text("a");
  EXPECT_STREQ(buffer, "");
  EXPECT_FALSE(text.complete());
}

TEST(LeadingDecimal, ReadsDigitsAfterSpacesAndStopsAtTheFirstOther) {
  EXPECT_EQ(leading_decimal("  12345 678"), 12345u);
  EXPECT_EQ(leading_decimal("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(leading_decimal("x1"), 0u);
  EXPECT_EQ(leading_decimal(""), 0u);
}

}  // namespace
}  // namespace heapkeeper::alloc
