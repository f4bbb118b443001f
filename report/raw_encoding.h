// The raw encodings' two halves (report/raw_dump.h, report/raw_why.h): a writer of fixed-width
// little-endian fields inside the traced process, and a bounds-checked cursor that reads them in
// the `heapkeeper` binary from bytes that may be anything.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "report/raw_dump.h"

namespace heapkeeper::report {

class RawWriter {
 public:
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u32(uint32_t v) { raw(&v, sizeof v); }
  void u64(uint64_t v) { raw(&v, sizeof v); }
  void i32(int32_t v) { raw(&v, sizeof v); }
  void i64(int64_t v) { raw(&v, sizeof v); }
  void bytes(std::string_view text) {
    u32(static_cast<uint32_t>(text.size()));
    out_.append(text.data(), text.size());
  }
  void raw(const void* data, size_t size) { out_.append(static_cast<const char*>(data), size); }
  std::string& text() { return out_; }

 private:
  std::string out_;
};

// Reads fixed-width fields from a buffer; the first read past the end (or any check that fails)
// records one reason and makes every later read fail too, so callers check once per section.
class RawCursor {
 public:
  explicit RawCursor(std::string_view data) : data_(data) {}
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  size_t left() const { return data_.size() - at_; }
  void fail(const std::string& why) {
    if (error_.empty()) error_ = why + " (at byte " + std::to_string(at_) + ")";
  }
  template <typename T>
  T number(const char* what) {
    T value{};
    if (!ok()) return value;
    if (left() < sizeof(T)) {
      fail(std::string("truncated in ") + what);
      return value;
    }
    std::memcpy(&value, data_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return value;
  }
  uint8_t u8(const char* what) { return number<uint8_t>(what); }
  uint32_t u32(const char* what) { return number<uint32_t>(what); }
  uint64_t u64(const char* what) { return number<uint64_t>(what); }
  bool flag(const char* what) {
    const uint8_t v = u8(what);
    if (v > 1) fail(std::string("bad flag in ") + what);
    return v == 1;
  }
  std::string bytes(const char* what, size_t limit = SIZE_MAX) {
    const uint32_t length = u32(what);
    if (!ok()) return {};
    if (length > left()) {
      fail(std::string("truncated in ") + what);
      return {};
    }
    if (length > limit) {
      fail(std::string(what) + " too long");
      return {};
    }
    std::string text(data_.data() + at_, length);
    at_ += length;
    return text;
  }
  // A count of entries each at least `entry_bytes` long: never more than what is left could hold.
  uint32_t count(const char* what, size_t entry_bytes) {
    const uint32_t n = u32(what);
    if (ok() && static_cast<uint64_t>(n) * entry_bytes > left()) fail(std::string("impossible count in ") + what);
    return ok() ? n : 0;
  }

 private:
  std::string_view data_;
  size_t at_ = 0;
  std::string error_;
};

// The module map and stacks sections, as raw_dump.h describes them (shared by both encodings).
void write_modules(RawWriter& w, const std::vector<RawModule>& modules);
void write_stacks(RawWriter& w, const std::vector<RawStack>& stacks);
void write_python_codes(RawWriter& w, const std::vector<RawPythonCode>& codes);
void read_modules(RawCursor& c, std::vector<RawModule>& modules);
void read_python_codes(RawCursor& c, std::vector<RawPythonCode>& codes);
// Frames' module indexes are checked against `module_count`; `ids` collects the stack ids (one
// appearing twice fails).
void read_stacks(RawCursor& c, size_t module_count, std::vector<RawStack>& stacks, std::unordered_set<uint32_t>& ids);

}  // namespace heapkeeper::report
