// A flame graph of a heap profile as one self-contained SVG file (no network, no external script
// or font): the outermost calls at the bottom, each frame as wide as the bytes allocated under it,
// callees stacked above their callers (Brendan Gregg's flamegraph.pl layout). Each frame is a
// <g class="frame"> holding a <title> (full name, bytes, percentage: what a browser shows on hover),
// a <rect> (x and width in pixels, proportional to bytes) and a <text> label cut to fit ("..");
// data-name/data-bytes/data-depth carry the frame's facts for the inline script (click to zoom,
// hover details, reset) and for tests. Frames narrower than 0.1 pixel are left out, as
// flamegraph.pl does.
#pragma once

#include <string>
#include <vector>

#include "analysis/heap_profile.h"

namespace heapkeeper::view {

// The SVG of `stacks` (analysis::folded_stacks, of live bytes or, with `leaks`, leaked bytes),
// 1200 pixels wide, under `title` ("Live heap of /usr/bin/prog (pid 123)").
std::string flamegraph_svg(const std::vector<analysis::FoldedStack>& stacks, const std::string& title, bool leaks);

}  // namespace heapkeeper::view
