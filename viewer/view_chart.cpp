// Implementation of the live view's chart (see view_chart.h).
//
// Braille cells: U+2800 plus a bit per dot. Dots are numbered down the left column 1, 2, 3, 7 and
// down the right column 4, 5, 6, 8; an area is filled from the bottom, so a column filled to
// level n (1..4) sets its n lowest dots.
#include "viewer/view_chart.h"

#include <algorithm>

namespace heapkeeper::view {
namespace {

// Bits of a braille column filled from the bottom to level 0..4.
constexpr unsigned kLeftColumn[5] = {0x00, 0x40, 0x44, 0x46, 0x47};
constexpr unsigned kRightColumn[5] = {0x00, 0x80, 0xa0, 0xb0, 0xb8};

void append_utf8(std::string& out, unsigned code_point) {
  // Braille patterns are all in U+2800..U+28FF: three bytes.
  out += static_cast<char>(0xe0 | (code_point >> 12));
  out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3f));
  out += static_cast<char>(0x80 | (code_point & 0x3f));
}

// Height of a value in dots, out of `levels`.
int dots_of(uint64_t value, uint64_t scale_max, int levels) {
  if (value == 0) return 0;
  const long double fraction =
      static_cast<long double>(std::min(value, scale_max)) / static_cast<long double>(scale_max);
  const int dots = static_cast<int>(fraction * levels + 0.5L);
  return std::clamp(dots, 1, levels);
}

}  // namespace

SeriesValues series_of(const stats::Snapshot& s) {
  SeriesValues out;
  const uint32_t count = std::min(s.series_count, stats::kSeriesLength);
  const uint32_t next = s.series_next % stats::kSeriesLength;
  out.live_bytes.reserve(count);
  out.leaked_bytes.reserve(count);
  uint64_t first_ns = 0, last_ns = 0;
  for (uint32_t i = 0; i < count; ++i) {
    const stats::SeriesPoint& p = s.series[(next + stats::kSeriesLength - count + i) % stats::kSeriesLength];
    out.live_bytes.push_back(p.live_bytes);
    out.leaked_bytes.push_back(p.leaked_bytes);
    if (i == 0) first_ns = p.time_ns;
    last_ns = p.time_ns;
  }
  out.span_ns = last_ns > first_ns ? last_ns - first_ns : 0;
  return out;
}

size_t chart_capacity(int width, bool utf8) { return width <= 0 ? 0 : static_cast<size_t>(width) * (utf8 ? 2 : 1); }

uint64_t max_of_last(const std::vector<uint64_t>& values, size_t count) {
  uint64_t most = 0;
  const size_t first = values.size() > count ? values.size() - count : 0;
  for (size_t i = first; i < values.size(); ++i) most = std::max(most, values[i]);
  return most;
}

std::vector<std::string> render_area_chart(const std::vector<uint64_t>& values, uint64_t scale_max, int width,
                                           int height, bool utf8) {
  std::vector<std::string> lines;
  if (width <= 0 || height <= 0) return lines;
  scale_max = std::max<uint64_t>(scale_max, 1);
  const int per_cell = utf8 ? 2 : 1;  // points across a cell
  const int per_row = utf8 ? 4 : 2;   // levels up a cell
  const int levels = height * per_row;
  const size_t points = static_cast<size_t>(width) * static_cast<size_t>(per_cell);
  // Heights of the points shown, right-aligned: the columns left of the oldest point stay empty.
  std::vector<int> heights(points, 0);
  const size_t shown = std::min(points, values.size());
  for (size_t i = 0; i < shown; ++i) {
    heights[points - shown + i] = dots_of(values[values.size() - shown + i], scale_max, levels);
  }
  for (int row = 0; row < height; ++row) {
    const int base = (height - 1 - row) * per_row;  // levels below this row
    std::string line;
    for (int cell = 0; cell < width; ++cell) {
      const size_t first = static_cast<size_t>(cell) * static_cast<size_t>(per_cell);
      if (utf8) {
        const int left = std::clamp(heights[first] - base, 0, 4);
        const int right = std::clamp(heights[first + 1] - base, 0, 4);
        if (left == 0 && right == 0) {
          line += ' ';
        } else {
          append_utf8(line, 0x2800u + kLeftColumn[left] + kRightColumn[right]);
        }
      } else {
        const int filled = std::clamp(heights[first] - base, 0, 2);
        line += filled == 0 ? ' ' : filled == 1 ? '.' : ':';
      }
    }
    lines.push_back(std::move(line));
  }
  return lines;
}

}  // namespace heapkeeper::view
