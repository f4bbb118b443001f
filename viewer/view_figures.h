// The top of `heapkeeper view`'s process screen: the title line (pid, program, state, uptime),
// the figures (totals and rates, heap, last scan) and the chart of live and leaked bytes over
// time. Drawn from one sanitised snapshot; no state of its own.
#pragma once

#include "stats/shm_layout.h"
#include "viewer/rss_breakdown.h"
#include "viewer/segment_reader.h"
#include "viewer/view_screen.h"

namespace heapkeeper::view {

// Lines the title and figures take: 5 in the full layout, 2 in the compact one.
int figure_lines(bool compact);
// Draws the title and figures from line 0. `exited`: the process is gone; the title becomes a
// banner saying so, and the figures are its last ones. `rss`: the RSS breakdown (rss_breakdown.h),
// measured with the snapshot; its line says why when it is not known.
void draw_figures(Screen& screen, const SegmentInfo& info, const stats::Snapshot& snapshot, const RssBreakdown& rss,
                  bool exited, bool compact);
// Draws the charts in lines [y, y + height): a caption line, live bytes, then leaked bytes.
// Heights below 4 draw nothing.
void draw_charts(Screen& screen, const stats::Snapshot& snapshot, int y, int height);

}  // namespace heapkeeper::view
