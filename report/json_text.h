// Lossless text for JSON: how heapkeeper turns bytes that need not be UTF-8 (argv, paths, module
// and file names, symbols, thread names, suppression patterns) into JSON strings and back.
//
// JSON strings are Unicode; a Linux name is any bytes but '/' and NUL. The convention (the one
// MirBSD's OPTU-8 uses for raw octets): valid UTF-8 stays as it is, and each byte of an invalid
// sequence, 0x80..0xFF, becomes the private-use code point U+EF00 + byte (U+EF80..U+EFFF). So that
// the mapping is a bijection, a valid sequence that encodes one of those code points itself is
// escaped byte by byte too; any other text is untouched. The result is valid UTF-8 that every JSON
// parser reads (python's json, jq, nlohmann), and decode_json_text gives back the exact bytes (in
// Python: README.md, "Strings in JSON").
// For terminals, printable_json_text shows each escaped byte as "\xe9".
//
// Header-only and allocation-light: the library (inside the traced program, guard held) and the
// `heapkeeper` command include the same definitions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace heapkeeper::report {

inline constexpr uint32_t kEscapedByteBase = 0xEF00;  // byte b (0x80..0xFF) <-> U+EF00 + b

// Length of the valid UTF-8 sequence at text[i] (RFC 3629: no overlong forms, no surrogates, at
// most U+10FFFF) and its code point; 0 if the bytes there are not one.
inline size_t utf8_sequence(std::string_view text, size_t i, uint32_t& code_point) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(text[k]); };
  const uint8_t first = byte(i);
  if (first < 0x80) {
    code_point = first;
    return 1;
  }
  size_t length;
  uint32_t value, minimum;
  if (first >= 0xC2 && first <= 0xDF) {
    length = 2, value = first & 0x1F, minimum = 0x80;
  } else if (first >= 0xE0 && first <= 0xEF) {
    length = 3, value = first & 0x0F, minimum = 0x800;
  } else if (first >= 0xF0 && first <= 0xF4) {
    length = 4, value = first & 0x07, minimum = 0x10000;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  for (size_t k = 1; k < length; ++k) {
    const uint8_t continuation = byte(i + k);
    if ((continuation & 0xC0) != 0x80) return 0;
    value = (value << 6) | (continuation & 0x3F);
  }
  if (value < minimum || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return 0;
  code_point = value;
  return length;
}

inline bool is_escaped_byte(uint32_t code_point) {
  return code_point >= kEscapedByteBase + 0x80 && code_point <= kEscapedByteBase + 0xFF;
}

// Raw bytes -> valid UTF-8 (see the file comment).
inline std::string json_text(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    uint32_t code_point = 0;
    const size_t length = utf8_sequence(bytes, i, code_point);
    if (length > 0 && !is_escaped_byte(code_point)) {
      out.append(bytes.data() + i, length);
      i += length;
      continue;
    }
    // One byte escaped: 0x80..0xFF -> U+EF80..U+EFFF, three bytes EE BE/BF xx.
    const uint32_t escaped = kEscapedByteBase + static_cast<uint8_t>(bytes[i]);
    out += static_cast<char>(0xE0 | (escaped >> 12));
    out += static_cast<char>(0x80 | ((escaped >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (escaped & 0x3F));
    ++i;
  }
  return out;
}

// The inverse of json_text: the original bytes.
inline std::string decode_json_text(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    uint32_t code_point = 0;
    const size_t length = utf8_sequence(text, i, code_point);
    if (length == 0) {  // not produced by json_text; kept as it is
      out += text[i++];
    } else if (is_escaped_byte(code_point)) {
      out += static_cast<char>(code_point - kEscapedByteBase);
      i += length;
    } else {
      out.append(text.data() + i, length);
      i += length;
    }
  }
  return out;
}

// For a terminal: json_text's escapes shown as "\xe9", control characters as "\x07".
inline std::string printable_json_text(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    uint32_t code_point = 0;
    size_t length = utf8_sequence(text, i, code_point);
    if (length == 0) code_point = static_cast<uint8_t>(text[i]), length = 1;
    uint32_t shown = is_escaped_byte(code_point) ? code_point - kEscapedByteBase : code_point;
    if (is_escaped_byte(code_point) || shown < 0x20 || shown == 0x7F || (length == 1 && shown >= 0x80)) {
      out += "\\x";
      out += kHex[(shown >> 4) & 0xF];
      out += kHex[shown & 0xF];
    } else {
      out.append(text.data() + i, length);
    }
    i += length;
  }
  return out;
}

}  // namespace heapkeeper::report
