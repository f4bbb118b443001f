// Implementation of growth detection (see site_growth.h).
#include "stats/site_growth.h"

#include <algorithm>

namespace heapkeeper::stats {

void SiteGrowth::sample(uint64_t now_ns, const std::vector<report::SiteTotals>& sites) {
  const bool replace = last_sample_ns_ != 0 && now_ns - last_sample_ns_ < kMinimumSpacingNs;
  if (!replace) {
    ++round_;
    last_sample_ns_ = now_ns;
  }
  const size_t followed = std::min(sites.size(), kMaxFollowedSites);
  for (size_t i = 0; i < followed; ++i) {
    const report::SiteTotals& site = sites[i];
    History& h = histories_[site.stack_id];
    if (replace && h.count > 0 && h.last_seen == round_) {
      h.points[(h.next + kSamples - 1) % kSamples].bytes = site.bytes;  // the newest, refreshed
      continue;
    }
    // A site that had no live block in rounds it missed starts again (its history has a hole).
    if (h.count > 0 && h.last_seen + 1 != round_) h.count = h.next = 0;
    h.points[h.next] = {now_ns, site.bytes};
    h.next = (h.next + 1) % kSamples;
    if (h.count < kSamples) ++h.count;
    h.last_seen = round_;
  }
  // Forget the sites this round did not see: a history with a hole starts again anyway (above).
  if (replace) return;
  for (auto it = histories_.begin(); it != histories_.end();) {
    it = it->second.last_seen != round_ ? histories_.erase(it) : std::next(it);
  }
}

SiteGrowth::Growth SiteGrowth::of(uint32_t stack_id) const {
  Growth growth;
  const auto found = histories_.find(stack_id);
  if (found == histories_.end() || found->second.last_seen != round_) return growth;
  const History& h = found->second;
  if (h.count < 2) return growth;
  const size_t first = (h.next + kSamples - h.count) % kSamples;
  const Point& oldest = h.points[first];
  const Point& newest = h.points[(h.next + kSamples - 1) % kSamples];
  if (newest.time_ns > oldest.time_ns) {
    growth.bytes_per_second = (static_cast<double>(newest.bytes) - static_cast<double>(oldest.bytes)) /
                              (static_cast<double>(newest.time_ns - oldest.time_ns) / 1e9);
  }
  size_t rising = 0;
  for (size_t i = 1; i < h.count; ++i) {
    const Point& a = h.points[(first + i - 1) % kSamples];
    const Point& b = h.points[(first + i) % kSamples];
    if (b.bytes > a.bytes) ++rising;
  }
  growth.growing = h.count >= kMinimumSamples && newest.bytes >= oldest.bytes + kMinimumGrowthBytes &&
                   static_cast<double>(rising) >= kRisingShare * static_cast<double>(h.count - 1);
  return growth;
}

}  // namespace heapkeeper::stats
