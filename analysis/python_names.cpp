// Decoding CPython 3.11 location tables (see python_names.h).
#include "analysis/python_names.h"

namespace heapkeeper::analysis {
namespace {

class TableReader {
 public:
  explicit TableReader(std::string_view table) : table_(table) {}
  bool done() const { return at_ >= table_.size(); }
  uint8_t byte() { return done() ? 0 : static_cast<uint8_t>(table_[at_++]); }
  // The next byte would start an entry (or there is none).
  bool at_entry() const { return done() || (static_cast<uint8_t>(table_[at_]) & 0x80) != 0; }
  uint64_t varint() {
    uint64_t value = 0;
    for (unsigned shift = 0; !at_entry() && shift < 64; shift += 6) {
      const uint8_t b = byte();
      value |= static_cast<uint64_t>(b & 0x3F) << shift;
      if ((b & 0x40) == 0) break;
    }
    return value;
  }
  int64_t signed_varint() {
    const uint64_t value = varint();
    const auto magnitude = static_cast<int64_t>(value >> 1);
    return (value & 1) != 0 ? -magnitude : magnitude;
  }
  void skip_to_entry() {
    while (!at_entry()) ++at_;
  }

 private:
  std::string_view table_;
  size_t at_ = 0;
};

}  // namespace

int python_line(std::string_view linetable, int first_line, uint32_t code_unit) {
  TableReader table(linetable);
  int64_t line = first_line;
  uint64_t start = 0;
  while (!table.done()) {
    const uint8_t head = table.byte();
    if ((head & 0x80) == 0) return 0;  // not at an entry: malformed
    const unsigned kind = (head >> 3) & 0x0F;
    const uint64_t length = (head & 0x07) + 1u;
    bool known = true;
    int64_t delta = 0;
    if (kind == 15) {
      known = false;
    } else if (kind == 14 || kind == 13) {
      delta = table.signed_varint();
    } else if (kind >= 10) {
      delta = static_cast<int64_t>(kind) - 10;
    }
    // The table comes from a dump, not trusted: deltas of up to 2^63 each must not overflow the
    // running line (undefined behaviour). A line that leaves int64 is no line: malformed.
    if (__builtin_add_overflow(line, delta, &line)) return 0;
    table.skip_to_entry();  // columns and end lines: not needed for the line
    if (code_unit < start + length) return known && line > 0 && line <= INT32_MAX ? static_cast<int>(line) : 0;
    start += length;
  }
  return 0;
}

}  // namespace heapkeeper::analysis
