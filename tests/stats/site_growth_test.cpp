// Growth detection (stats/site_growth.h): which allocation sites the live view calls growing, and
// how many it follows.
#include "stats/site_growth.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace {

using heapkeeper::report::SiteTotals;
using heapkeeper::stats::SiteGrowth;

constexpr uint64_t kSecond = 1'000'000'000ull;

// `count` sites, ids 1..count, site i holding (count - i + 1) KiB: sorted by bytes, largest first.
std::vector<SiteTotals> sites_by_size(uint32_t count) {
  std::vector<SiteTotals> sites;
  for (uint32_t id = 1; id <= count; ++id) sites.push_back({id, 1, uint64_t{count - id + 1} << 10});
  return sites;
}

TEST(SiteGrowth, ASiteRisingInMostStepsGrowsAndAChurningOneDoesNot) {
  SiteGrowth growth;
  for (uint64_t step = 0; step < SiteGrowth::kSamples; ++step) {
    const uint64_t churn = (step % 2 == 0 ? 64 : 32) << 10;
    growth.sample((step + 1) * kSecond, {{1, 10, (step + 1) * (8 << 10)}, {2, 10, churn}});
  }
  EXPECT_TRUE(growth.of(1).growing);
  EXPECT_NEAR(growth.of(1).bytes_per_second, 8 << 10, 1);
  EXPECT_FALSE(growth.of(2).growing);
  EXPECT_FALSE(growth.of(3).growing);  // never seen
}

TEST(SiteGrowth, OnlyTheLargestSitesAreFollowed) {
  SiteGrowth growth;
  const std::vector<SiteTotals> many = sites_by_size(SiteGrowth::kMaxFollowedSites * 10);
  for (uint64_t step = 1; step <= 3; ++step) growth.sample(step * kSecond, many);
  EXPECT_EQ(growth.followed(), SiteGrowth::kMaxFollowedSites);
  // A site past the followed ones has no growth known, whatever its history would have said.
  EXPECT_EQ(growth.of(SiteGrowth::kMaxFollowedSites + 1).bytes_per_second, 0);
}

TEST(SiteGrowth, ASiteGoneIsForgottenAndStartsAgainWhenItReturns) {
  SiteGrowth growth;
  for (uint64_t step = 1; step <= 6; ++step) growth.sample(step * kSecond, {{1, 1, step << 20}, {2, 1, 1 << 10}});
  EXPECT_TRUE(growth.of(1).growing);
  growth.sample(7 * kSecond, {{2, 1, 1 << 10}});  // site 1 has no live block now
  EXPECT_EQ(growth.followed(), 1u);
  EXPECT_FALSE(growth.of(1).growing);
  growth.sample(8 * kSecond, {{1, 1, uint64_t{9} << 20}, {2, 1, 1 << 10}});
  EXPECT_FALSE(growth.of(1).growing);  // one sample of a new history
}

TEST(SiteGrowth, SamplesCloserThanTheSpacingRefreshTheNewestPoint) {
  SiteGrowth growth;
  for (uint64_t step = 1; step <= 5; ++step) growth.sample(step * kSecond, {{1, 1, step << 20}});
  EXPECT_TRUE(growth.of(1).growing);
  // Ten samples 10 ms apart replace the newest point: still five points, still growing, and the
  // site they all see stays followed.
  for (uint64_t i = 1; i <= 10; ++i) growth.sample(5 * kSecond + i * 10'000'000ull, {{1, 1, uint64_t{6} << 20}});
  EXPECT_TRUE(growth.of(1).growing);
  EXPECT_EQ(growth.followed(), 1u);
}

}  // namespace
