// Parsers for the values of heapkeeper's settings (HEAPKEEPER_* variables, `heapkeeper run`'s
// options), header-only so that the library reading the environment and the binary checking its
// options before it sets them accept exactly the same text. No allocation, no locale.
#pragma once

#include <cstdint>
#include <cstring>

namespace heapkeeper::alloc {

inline bool text_equals(const char* a, const char* b) { return std::strcmp(a, b) == 0; }

// Leading decimal digits (at least one) into `number`, `suffix` at what follows; false on overflow.
inline bool parse_number_with_suffix(const char* text, uint64_t& number, const char*& suffix) {
  if (text == nullptr || *text < '0' || *text > '9') return false;
  uint64_t result = 0;
  const char* p = text;
  for (; *p >= '0' && *p <= '9'; ++p) {
    uint64_t digit = static_cast<uint64_t>(*p - '0');
    if (result > (UINT64_MAX - digit) / 10) return false;
    result = result * 10 + digit;
  }
  number = result;
  suffix = p;
  return true;
}

// A whole number of decimal digits, nothing else; false on overflow.
inline bool parse_unsigned(const char* text, uint64_t& value) {
  const char* rest = nullptr;
  uint64_t number = 0;
  if (!parse_number_with_suffix(text, number, rest) || *rest != '\0') return false;
  value = number;
  return true;
}

// Parses "10s", "250ms", "2m", "0" into milliseconds; a bare number means seconds.
inline bool parse_duration_ms(const char* text, uint64_t& milliseconds) {
  uint64_t n = 0;
  const char* suffix = nullptr;
  if (!parse_number_with_suffix(text, n, suffix)) return false;
  uint64_t scale;
  if (*suffix == '\0' || text_equals(suffix, "s"))
    scale = 1000;
  else if (text_equals(suffix, "ms"))
    scale = 1;
  else if (text_equals(suffix, "m") || text_equals(suffix, "min"))
    scale = 60'000;
  else if (text_equals(suffix, "h"))
    scale = 3'600'000;
  else
    return false;
  if (n > UINT64_MAX / scale) return false;
  milliseconds = n * scale;
  return true;
}

// HEAPKEEPER_STATS_DELAY: a duration of at most a day (the publisher counts it in 32-bit
// milliseconds). Shared by the library and the reader that waits for a delayed segment.
inline bool parse_stats_delay_ms(const char* text, uint64_t& milliseconds) {
  uint64_t ms = 0;
  if (!parse_duration_ms(text, ms) || ms > 24ull * 3'600'000) return false;
  milliseconds = ms;
  return true;
}

// Parses "64G", "512M", "4096", "1T" (binary units) into bytes.
inline bool parse_byte_size(const char* text, uint64_t& bytes) {
  uint64_t n = 0;
  const char* suffix = nullptr;
  if (!parse_number_with_suffix(text, n, suffix)) return false;
  unsigned shift;
  switch (*suffix) {
    case '\0':
      shift = 0;
      break;
    case 'k':
    case 'K':
      shift = 10;
      break;
    case 'm':
    case 'M':
      shift = 20;
      break;
    case 'g':
    case 'G':
      shift = 30;
      break;
    case 't':
    case 'T':
      shift = 40;
      break;
    default:
      return false;
  }
  if (*suffix != '\0') {
    const char* rest = suffix + 1;
    if (!(*rest == '\0' || text_equals(rest, "B") || text_equals(rest, "iB") || text_equals(rest, "b"))) return false;
  }
  if (shift > 0 && n > (UINT64_MAX >> shift)) return false;
  bytes = n << shift;
  return true;
}

}  // namespace heapkeeper::alloc
