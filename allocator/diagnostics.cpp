// Implementation of the async-signal-safe diagnostic writer (see diagnostics.h).
#include "allocator/diagnostics.h"

#include <unistd.h>
#include <cerrno>

namespace heapkeeper::alloc {

void write_stderr(const char* data, size_t length) {
  const int saved_errno = errno;  // diagnostics must never change what the program sees
  while (length > 0) {
    ssize_t written = ::write(STDERR_FILENO, data, length);
    if (written < 0) {
      if (errno == EINTR) continue;
      break;
    }
    data += written;
    length -= static_cast<size_t>(written);
  }
  errno = saved_errno;
}

DiagnosticLine::DiagnosticLine() {
  text("heapkeeper[");
  number(static_cast<uint64_t>(::getpid()));
  text("]: ");
}

DiagnosticLine& DiagnosticLine::text(std::string_view s) {
  for (char c : s) {
    if (length_ + 2 >= kCapacity) break;  // keep room for '\n'
    buffer_[length_++] = c;
  }
  return *this;
}

DiagnosticLine& DiagnosticLine::number(uint64_t value) {
  char digits[24];
  size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  while (n > 0) text(std::string_view(&digits[--n], 1));
  return *this;
}

DiagnosticLine& DiagnosticLine::signed_number(int64_t value) {
  if (value < 0) {
    text("-");
    return number(static_cast<uint64_t>(-(value + 1)) + 1);
  }
  return number(static_cast<uint64_t>(value));
}

DiagnosticLine& DiagnosticLine::hex(uint64_t value) {
  static constexpr char kDigits[] = "0123456789abcdef";
  char digits[16];
  size_t n = 0;
  do {
    digits[n++] = kDigits[value & 0xf];
    value >>= 4;
  } while (value != 0);
  text("0x");
  while (n > 0) text(std::string_view(&digits[--n], 1));
  return *this;
}

DiagnosticLine& DiagnosticLine::bytes(uint64_t value) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  size_t unit = 0;
  uint64_t whole = value, tenths = 0;
  while (whole >= 1024 && unit + 1 < sizeof(kUnits) / sizeof(kUnits[0])) {
    tenths = (whole % 1024) * 10 / 1024;
    whole /= 1024;
    ++unit;
  }
  number(whole);
  if (unit > 0) text(".").number(tenths);
  return text(" ").text(kUnits[unit]);
}

void DiagnosticLine::emit() {
  buffer_[length_++] = '\n';
  write_stderr(buffer_, length_);
  length_ = 0;
}

}  // namespace heapkeeper::alloc
