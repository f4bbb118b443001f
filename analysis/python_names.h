// Naming Python frames (allocator/python_frame_word.h) in the `heapkeeper` binary, from the code
// names a dump carries (report/raw_dump.h's python section): qualified name, file, and the line of
// the recorded instruction, decoded from CPython 3.11's location table (co_linetable) as
// PyCode_Addr2Line would.
//
// The location table is a sequence of entries, each covering 1 to 8 code units. An entry's first
// byte has bit 7 set, its kind in bits 3..6 and its length minus one in bits 0..2; bytes without
// bit 7 follow. Kinds 0..9 (short forms) and 10..12 (one-line forms: the line moves by kind - 10)
// carry columns only; 13 carries a signed varint line delta, 14 the same then end line and columns,
// 15 means no location (line unknown; the running line stays). Varints are 6 bits a byte, least
// significant first, bit 6 meaning "more"; a signed varint keeps the sign in its lowest bit.
#pragma once

#include <cstdint>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "report/raw_dump.h"

namespace heapkeeper::analysis {

// The source line of the instruction at `code_unit` (code units from the start of the bytecode),
// or 0 when the table gives none (no location, past its end, malformed).
int python_line(std::string_view linetable, int first_line, uint32_t code_unit);

// A dump's Python code names, by code key.
class PythonCodes {
 public:
  PythonCodes() = default;
  explicit PythonCodes(const std::vector<report::RawPythonCode>& codes) {
    for (const report::RawPythonCode& code : codes) by_key_.emplace(code.key, &code);
  }
  // No code at all: the process recorded no Python frame (a native program).
  bool empty() const { return by_key_.empty(); }
  const report::RawPythonCode* find(uint64_t key) const {
    auto it = by_key_.find(key);
    return it == by_key_.end() ? nullptr : it->second;
  }

 private:
  std::unordered_map<uint64_t, const report::RawPythonCode*> by_key_;
};

}  // namespace heapkeeper::analysis
