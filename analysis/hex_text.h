// Bytes as lower-case hexadecimal text (build IDs, as readelf and debuginfod spell them).
#pragma once

#include <string>
#include <string_view>

namespace heapkeeper::analysis {

inline std::string hex_text(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text;
  text.reserve(2 * bytes.size());
  for (const unsigned char c : bytes) {
    text += kDigits[c >> 4];
    text += kDigits[c & 15];
  }
  return text;
}

}  // namespace heapkeeper::analysis
