// The time-series chart of `heapkeeper view`: live bytes and leaked bytes over the last minutes,
// drawn as a filled area. With UTF-8, each character cell holds a 2x4 braille dot matrix (two
// points a cell, four levels a row); without it, ASCII with one point a cell and two levels a
// row (' ', '.', ':'). The rendering is pure text, so it is tested without a terminal.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "stats/shm_layout.h"

namespace heapkeeper::view {

struct SeriesValues {
  std::vector<uint64_t> live_bytes, leaked_bytes;  // oldest first, one point a second
  uint64_t span_ns = 0;                            // time from the oldest to the newest point
};

// The snapshot's ring of points, in order (the snapshot must have been sanitised).
SeriesValues series_of(const stats::Snapshot& snapshot);

// How many points a chart `width` cells wide shows.
size_t chart_capacity(int width, bool utf8);

// `height` lines of exactly `width` cells each (UTF-8 strings when `utf8`), the newest point at
// the right edge. The scale is 0 .. `scale_max` (at least 1); a non-zero value is always at least
// one dot high so that small figures stay visible.
std::vector<std::string> render_area_chart(const std::vector<uint64_t>& values, uint64_t scale_max, int width,
                                           int height, bool utf8);

// The largest of the last `count` values (0 when empty).
uint64_t max_of_last(const std::vector<uint64_t>& values, size_t count);

}  // namespace heapkeeper::view
