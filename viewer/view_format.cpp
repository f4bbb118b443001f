// Implementation of the live view's text forms (see view_format.h).
#include "viewer/view_format.h"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>

#include "report/leak_kind.h"

namespace heapkeeper::view {

std::string format_bytes(uint64_t bytes) {
  static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(units)) {
    value /= 1024;
    ++unit;
  }
  return fmt::format("{:.1f} {}", value, units[unit]);
}

std::string format_signed_bytes(int64_t bytes) {
  if (bytes >= 0) return format_bytes(static_cast<uint64_t>(bytes));
  // Negating INT64_MIN overflows; go through the unsigned value instead.
  return "-" + format_bytes(~static_cast<uint64_t>(bytes) + 1);
}

std::string format_count(uint64_t count) {
  std::string digits = std::to_string(count);
  std::string out;
  out.reserve(digits.size() + digits.size() / 3);
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

double finite_rate(double per_second) { return std::isfinite(per_second) && per_second > 0 ? per_second : 0.0; }

std::string format_rate(double per_second) {
  const double rate = finite_rate(per_second);
  if (rate == 0) return "0";
  if (rate < 10) return fmt::format("{:.1f}", rate);
  if (rate >= 1.8e19) return "huge";
  return format_count(static_cast<uint64_t>(std::llround(rate)));
}

std::string format_duration(uint64_t nanoseconds) {
  const uint64_t s = nanoseconds / 1000000000ull;
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60);
  return fmt::format("{}d{:02}h", s / 86400, (s / 3600) % 24);
}

std::string leak_kind_text(uint32_t kind) {
  return report::valid_leak_kind(kind) ? report::leak_kind_name(static_cast<report::LeakKind>(kind)) : "?";
}

std::string base_name(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string frame_function(const stats::Frame& frame) {
  return frame.function[0] != '\0' ? std::string(frame.function, strnlen(frame.function, sizeof(frame.function)))
                                   : "??";
}

std::string frame_location(const stats::Frame& frame) {
  const std::string file(frame.file, strnlen(frame.file, sizeof(frame.file)));
  if (!file.empty()) return fmt::format("{}:{}", base_name(file), frame.line);
  const std::string module(frame.module, strnlen(frame.module, sizeof(frame.module)));
  return fmt::format("{}+{:#x}", module.empty() ? "??" : base_name(module), frame.module_offset);
}

std::string frame_text(const stats::Frame& frame) {
  const std::string file(frame.file, strnlen(frame.file, sizeof(frame.file)));
  const std::string module(frame.module, strnlen(frame.module, sizeof(frame.module)));
  std::string text = frame_function(frame);
  if (!file.empty()) text += fmt::format(" at {}:{}", file, frame.line);
  text += fmt::format(" ({}+{:#x})", module.empty() ? "??" : module, frame.module_offset);
  return text;
}

std::string printable(const std::string& text, bool utf8) {
  std::string out = text;
  for (char& c : out) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f || (!utf8 && byte >= 0x80)) c = '?';
  }
  return out;
}

bool contains_ignoring_case(const std::string& text, const std::string& needle) {
  if (needle.empty()) return true;
  auto fold = [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); };
  return std::search(text.begin(), text.end(), needle.begin(), needle.end(),
                     [&](char a, char b) { return fold(a) == fold(b); }) != text.end();
}

}  // namespace heapkeeper::view
