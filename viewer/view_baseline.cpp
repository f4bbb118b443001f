// Implementation of the live view's baseline (see view_baseline.h).
#include "viewer/view_baseline.h"

#include <algorithm>
#include <limits>

#include "viewer/view_format.h"

namespace heapkeeper::view {
namespace {

// now - then as a signed figure (a corrupt snapshot may hold anything: saturate, never overflow).
int64_t difference(uint64_t now, uint64_t then) {
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (now >= then) return static_cast<int64_t>(std::min(now - then, kMax));
  return -static_cast<int64_t>(std::min(then - now, kMax));
}

}  // namespace

SiteBaseline::SiteBaseline(const stats::Snapshot& snapshot, std::chrono::steady_clock::time_point when)
    : live_bytes_(snapshot.live_bytes), live_blocks_(snapshot.live_blocks), marked_at_(when) {
  const uint32_t count = std::min(snapshot.site_count, stats::kMaxSites);
  every_site_listed_ = snapshot.total_site_count <= count;
  for (uint32_t i = 0; i < count; ++i) {
    Figures& figures = sites_[snapshot.sites[i].stack_id];
    // A stack id listed twice (a corrupt snapshot) counts once per listing.
    figures.bytes += snapshot.sites[i].live_bytes;
    figures.blocks += snapshot.sites[i].live_blocks;
  }
}

SiteDelta SiteBaseline::delta(const stats::Site& site) const {
  SiteDelta delta;
  const auto found = sites_.find(site.stack_id);
  const Figures then = found != sites_.end() ? found->second : Figures{};
  delta.bytes = difference(site.live_bytes, then.bytes);
  delta.blocks = difference(site.live_blocks, then.blocks);
  delta.upper_bound = found == sites_.end() && !every_site_listed_;
  return delta;
}

int64_t SiteBaseline::total_bytes_delta(const stats::Snapshot& now) const {
  return difference(now.live_bytes, live_bytes_);
}

int64_t SiteBaseline::total_blocks_delta(const stats::Snapshot& now) const {
  return difference(now.live_blocks, live_blocks_);
}

std::string format_delta_bytes(const SiteDelta& delta) {
  std::string text = format_signed_bytes(delta.bytes);
  if (delta.bytes > 0) text.insert(0, "+");
  return delta.upper_bound ? text + "*" : text;
}

std::string format_delta_blocks(const SiteDelta& delta) {
  const uint64_t magnitude =
      delta.blocks < 0 ? static_cast<uint64_t>(-(delta.blocks + 1)) + 1 : static_cast<uint64_t>(delta.blocks);
  std::string text = (delta.blocks > 0 ? "+" : delta.blocks < 0 ? "-" : "") + format_count(magnitude);
  return delta.upper_bound ? text + "*" : text;
}

}  // namespace heapkeeper::view
