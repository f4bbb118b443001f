// Text built in a fixed buffer the caller owns: strings, decimal and hexadecimal numbers.
//
// For what runs inside the traced program on every process's start and exit (file names under
// /proc, socket paths) and for diagnostics (diagnostics.h). snprintf would do, but it is glibc's
// largest formatting machinery: the first call in a process maps about 150 KiB of libc's read-only
// data and two more 64 KiB windows of its code, resident in every traced /bin/true (issue #12). No
// allocation, no lock, async-signal-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace heapkeeper::alloc {

class BoundedText {
 public:
  // `capacity` counts the terminating '\0', which is always kept.
  BoundedText(char* buffer, size_t capacity) : buffer_(buffer), capacity_(capacity) {
    if (capacity_ > 0) buffer_[0] = '\0';
  }

  BoundedText& text(std::string_view s) {
    for (char c : s) put(c);
    return *this;
  }
  BoundedText& number(uint64_t value) {
    char digits[20];
    size_t n = 0;
    do {
      digits[n++] = static_cast<char>('0' + value % 10);
      value /= 10;
    } while (value != 0);
    while (n > 0) put(digits[--n]);
    return *this;
  }
  // Lower-case digits, no "0x".
  BoundedText& hex(uint64_t value) {
    static constexpr char kDigits[] = "0123456789abcdef";
    char digits[16];
    size_t n = 0;
    do {
      digits[n++] = kDigits[value & 0xf];
      value >>= 4;
    } while (value != 0);
    while (n > 0) put(digits[--n]);
    return *this;
  }

  // False once something did not fit (what did is kept, cut short).
  bool complete() const { return !truncated_; }
  size_t size() const { return length_; }
  const char* c_str() const { return buffer_; }

 private:
  void put(char c) {
    if (length_ + 1 >= capacity_) {
      truncated_ = true;
      return;
    }
    buffer_[length_++] = c;
    buffer_[length_] = '\0';
  }

  char* buffer_;
  size_t capacity_;
  size_t length_ = 0;
  bool truncated_ = false;
};

// The unsigned decimal number at the start of `text` (after any spaces); 0 when there is none.
inline uint64_t leading_decimal(const char* text) {
  while (*text == ' ') ++text;
  uint64_t value = 0;
  for (; *text >= '0' && *text <= '9'; ++text) value = value * 10 + static_cast<uint64_t>(*text - '0');
  return value;
}

}  // namespace heapkeeper::alloc
