// Which allocation sites grow: a reachable leak (an unbounded cache, a list nobody trims) is live,
// so no scan reports it, but its live bytes keep rising. The publisher samples each site's live
// bytes from time to time (every publish while a reader watches, every 30 s otherwise, the first 30 s after start-up)
// and keeps the last kSamples per site; a site grows when its live bytes rose in most steps of that window and by a
// meaningful amount overall. A churning site, whose bytes go up and down around a level, does not.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "report/site_summary.h"

namespace heapkeeper::stats {

class SiteGrowth {
 public:
  static constexpr size_t kSamples = 12;
  static constexpr size_t kMinimumSamples = 5;
  // At least this much growth over the window, and at least this share of the steps rising.
  static constexpr uint64_t kMinimumGrowthBytes = uint64_t{16} << 10;
  static constexpr double kRisingShare = 0.75;
  // Samples closer together than this replace the newest instead of adding one: a window spans
  // at least kSamples * kMinimumSpacingNs.
  static constexpr uint64_t kMinimumSpacingNs = 1'000'000'000ull;

  // Sites followed at most: the largest by live bytes (the live-stats table shows the 100
  // largest). A history takes some 230 bytes: following every site a program has (python3's
  // imports make 10,000, a large C++ service many more) cost a watched process megabytes.
  static constexpr size_t kMaxFollowedSites = 1000;

  // Records the sites' live bytes at `now_ns`. `sites` is sorted by live bytes, largest first
  // (report::SiteAccumulator::sorted); sites absent from it have no live block now, and sites past
  // its first kMaxFollowedSites are not followed this time. A site not followed in a sample starts
  // a new history when it is again.
  void sample(uint64_t now_ns, const std::vector<report::SiteTotals>& sites);
  size_t followed() const { return histories_.size(); }

  struct Growth {
    bool growing = false;
    double bytes_per_second = 0;  // over the window (last - first) / time, whatever `growing` says
  };
  Growth of(uint32_t stack_id) const;

 private:
  struct Point {
    uint64_t time_ns, bytes;
  };
  struct History {
    Point points[kSamples];
    size_t count = 0, next = 0;  // ring
    uint64_t last_seen = 0;      // the sample round that last saw the site
  };
  std::unordered_map<uint32_t, History> histories_;
  uint64_t round_ = 0, last_sample_ns_ = 0;
};

}  // namespace heapkeeper::stats
