// Decoding CPython 3.11 location tables (analysis/python_names.h) against what the interpreter itself
// says. The tables and the lines below were made once by /usr/bin/python3.11 from the sources in
// the comments: `code.co_linetable.hex()` and, per code unit, `code.co_positions()`'s start line
// (None as 0).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "allocator/python_frame_word.h"
#include "analysis/module_symbolizer.h"
#include "analysis/python_names.h"

namespace heapkeeper::analysis {
namespace {

std::string from_hex(const std::string& hex) {
  std::string bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) bytes += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return bytes;
}

void expect_lines(const std::string& table_hex, int first_line, const std::vector<int>& lines) {
  const std::string table = from_hex(table_hex);
  for (size_t unit = 0; unit < lines.size(); ++unit)
    EXPECT_EQ(python_line(table, first_line, static_cast<uint32_t>(unit)), lines[unit]) << "code unit " << unit;
  EXPECT_EQ(python_line(table, first_line, static_cast<uint32_t>(lines.size())), 0) << "past the table";
}

// def sample(items, limit):       (line 2 of its file)
//     total = 0
//     for item in items:
//         if item > limit:
//             total += item
//         else:
//             total -= 1
//     try:
//         x = [i * 2
//              for i in range(total)]
//     except ValueError:
//         return None
//     return total + len(x)
// Short, one-line, no-column and no-location entries, loops and an exception handler.
TEST(PythonNames, LinesOfABranchyFunction) {
  expect_lines(
      "8000d80c0d8045d81015f000040517f0000405178804d80b0f90258a3c883cd80c119054894d88458845e00c119051894a88458845f00204"
      "0514f002010d24f000010d24dd161b9845916c946cf003010d24f100010d24f400010d2488018801f8e50b15f000010514f000010514f000"
      "010514d80f1388748874f003010514f8f8f8e00b109533907191369436893ed00419",
      2, {2,  3,  3,  4,  4,  4,  4,  5,  5,  5,  5,  5,  5,  6,  6,  6,  6,  6,  6,  8,  8,  8,
          8,  8,  8,  9,  10, 10, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 10, 10,
          10, 10, 10, 10, 10, 10, 10, 10, 0,  12, 12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 12,
          0,  0,  0,  14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14});
}

// def big(a):  then 400 empty lines, "    b = a + 1", 70 empty lines, "    return b": line deltas
// that need the long form and multi-byte varints.
TEST(PythonNames, LinesFarFromTheDefinition) {
  expect_lines("8000f0620c00090a884189058041f04e02000c0d8048", 1, {1, 402, 402, 402, 402, 402, 473, 473});
}

TEST(PythonNames, MalformedTablesGiveNoLine) {
  EXPECT_EQ(python_line("", 10, 0), 0);
  EXPECT_EQ(python_line(from_hex("0102"), 10, 0), 0);                      // no entry byte first
  EXPECT_EQ(python_line(from_hex("f8"), 10, 0), 0);                        // kind 15: no location
  EXPECT_EQ(python_line(from_hex("e87e7e7e7e7e7e7e7e7e7e3e"), 10, 0), 0);  // a line delta past any line
}

// A one-unit long-form entry (kind 13) moving the line by `delta`: its signed varint, 6 bits a byte.
std::string line_delta_entry(int64_t delta) {
  const uint64_t magnitude = delta < 0 ? 0 - static_cast<uint64_t>(delta) : static_cast<uint64_t>(delta);
  uint64_t value = (magnitude << 1) | (delta < 0 ? 1 : 0);
  std::string entry(1, static_cast<char>(0x80 | (13 << 3)));
  do {
    const auto bits = static_cast<uint8_t>(value & 0x3F);
    value >>= 6;
    entry += static_cast<char>(value != 0 ? bits | 0x40 : bits);
  } while (value != 0);
  return entry;
}

// A dump's table is not trusted: line deltas that carry the running line past int64 give no line
// and no signed overflow (which UBSan, in the build-asan run of scripts/test.sh, makes fatal).
TEST(PythonNames, HostileLineDeltasGiveNoLine) {
  constexpr int64_t kMax = INT64_MAX;
  EXPECT_EQ(python_line(line_delta_entry(41) + line_delta_entry(-2), 1, 1), 40);  // the encoding itself
  EXPECT_EQ(python_line(line_delta_entry(kMax), 10, 0), 0);
  EXPECT_EQ(python_line(line_delta_entry(kMax / 2 + 1) + line_delta_entry(kMax / 2 + 1), 1, 1), 0);
  EXPECT_EQ(python_line(line_delta_entry(-kMax) + line_delta_entry(-kMax), -5, 1), 0);
  // The one-line form's +2 right after a delta to the largest line.
  EXPECT_EQ(python_line(line_delta_entry(kMax - 1) + std::string(1, static_cast<char>(0x80 | (12 << 3))), 1, 1), 0);
  // Every later entry's answer too, not only the first past the overflow.
  std::string table;
  for (int i = 0; i < 8; ++i) table += line_delta_entry(kMax / 3);
  for (uint32_t unit = 0; unit < 8; ++unit) EXPECT_EQ(python_line(table, 1, unit), 0) << unit;
}

// A Python frame's word named from a dump's code names, and formatted as reports print it.
TEST(PythonNames, FramesNamedFromTheDumpsCodes) {
  // Code units 0 and 1 at lines 7 and 8 (a short form, then a one-line form one line down).
  const std::vector<report::RawPythonCode> codes = {
      {0xabc, 7, "Cache.fill", "/srv/app/cache.py", std::string("\x80\x00\xd8\x04\x05", 5)}};
  const PythonCodes python(codes);
  ModuleSymbolizer symbolizer;
  const SymbolizedFrame frame = symbolizer.resolve(nullptr, python_word::make(0xabc, 1), python);
  EXPECT_TRUE(frame.python);
  EXPECT_EQ(frame.function, "Cache.fill");
  EXPECT_EQ(frame.file, "/srv/app/cache.py");
  EXPECT_EQ(frame.line, 8);
  EXPECT_EQ(frame.module_offset, 2u);  // the instruction's byte offset
  EXPECT_EQ(ModuleSymbolizer::format(frame), "/srv/app/cache.py:8 in Cache.fill [py]");
  // A code the dump has no names for.
  const SymbolizedFrame unknown = symbolizer.resolve(nullptr, python_word::make(0xdef, 0), python);
  EXPECT_TRUE(unknown.python);
  EXPECT_EQ(ModuleSymbolizer::format(unknown), "?? in ?? [py]");
  // A dump with no Python codes (a native program): a word with bit 63 set is a garbage address
  // an unwinder returned, not a Python frame.
  const SymbolizedFrame garbage = symbolizer.resolve(nullptr, 0xc008000000000000ull, PythonCodes());
  EXPECT_FALSE(garbage.python);
  EXPECT_EQ(ModuleSymbolizer::format(garbage), "?? ?? 0xc008000000000000");
}

}  // namespace
}  // namespace heapkeeper::analysis
