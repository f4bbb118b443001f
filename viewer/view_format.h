// Short text forms of the live figures for `heapkeeper view`: byte counts, counts with digit
// groups, rates, durations and one stack frame. Every function is pure and takes figures straight
// from a sanitised snapshot, which may still hold any value a corrupt or racing producer wrote
// (rates that are NaN or infinite are shown as 0).
#pragma once

#include <cstdint>
#include <string>

#include "stats/shm_layout.h"

namespace heapkeeper::view {

// "0 B", "812 B", "46.9 KiB", "1.2 GiB".
std::string format_bytes(uint64_t bytes);
// Signed byte count: "-3.0 KiB".
std::string format_signed_bytes(int64_t bytes);
// "1,234,567".
std::string format_count(uint64_t count);
// "0", "4.5", "478", "12,345": a per-second rate; NaN, infinite or negative show as "0".
std::string format_rate(double per_second);
// "45s", "3m05s", "2h10m", "3d04h".
std::string format_duration(uint64_t nanoseconds);
// A rate usable for sorting and arithmetic: NaN, infinite or negative become 0.
double finite_rate(double per_second);

// A leak's kind as the segment holds it (report/leak_kind.h): "direct", "indirect", "cycle", or
// "?" for a value no producer writes.
std::string leak_kind_text(uint32_t kind);

// The last path component: "/usr/lib/libc.so.6" -> "libc.so.6".
std::string base_name(const std::string& path);
// The function of a frame, or "??" when it was not symbolized.
std::string frame_function(const stats::Frame& frame);
// "file.c:42" when the frame has a source line, else "module+0x1f3".
std::string frame_location(const stats::Frame& frame);
// The whole frame on one line: "leak_buffers at /src/x.c:42 (/usr/bin/x+0x1313)".
std::string frame_text(const stats::Frame& frame);

// Replaces control characters (and, when `utf8` is false, every non-ASCII byte) with '?', so
// that text from a tracked process can never move the cursor or change the terminal's state.
std::string printable(const std::string& text, bool utf8);
// Case-insensitive substring test (ASCII case folding).
bool contains_ignoring_case(const std::string& text, const std::string& needle);

}  // namespace heapkeeper::view
