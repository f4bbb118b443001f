// The baseline of `heapkeeper view`: the sites' live figures at a moment the user marks (key b),
// so that the sites table can show what each site gained or lost since — "what did that request
// leave behind?" — instead of what it holds in all. Pure (no terminal): view_rows.h builds the
// delta cells from it and tests check them directly.
//
// The snapshot lists only the largest stats::kMaxSites sites. A site listed now but not at the
// mark either is new since the mark (when every site was listed then) or was too small to be
// listed: its delta is then at most its live figures, shown with a trailing '*'.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>

#include "stats/shm_layout.h"

namespace heapkeeper::view {

struct SiteDelta {
  int64_t bytes = 0, blocks = 0;
  bool upper_bound = false;  // the site was not listed at the mark: at most this much
};

class SiteBaseline {
 public:
  // The figures of `snapshot`'s sites, marked at `when`.
  SiteBaseline(const stats::Snapshot& snapshot, std::chrono::steady_clock::time_point when);

  // What `site` gained (or lost: negative) since the mark.
  SiteDelta delta(const stats::Site& site) const;
  // The whole heap's change since the mark (every site, listed or not).
  int64_t total_bytes_delta(const stats::Snapshot& now) const;
  int64_t total_blocks_delta(const stats::Snapshot& now) const;
  std::chrono::steady_clock::time_point marked_at() const { return marked_at_; }

 private:
  struct Figures {
    uint64_t bytes = 0, blocks = 0;
  };
  std::unordered_map<uint32_t, Figures> sites_;  // by stack id
  bool every_site_listed_ = true;
  uint64_t live_bytes_ = 0, live_blocks_ = 0;
  std::chrono::steady_clock::time_point marked_at_;
};

// "+1.2 KiB", "-300 B", "0 B"; "+12", "-3", "0"; a '*' after an upper bound.
std::string format_delta_bytes(const SiteDelta& delta);
std::string format_delta_blocks(const SiteDelta& delta);

}  // namespace heapkeeper::view
