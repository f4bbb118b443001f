// How a Python frame sits in a recorded stack (allocator/python_frames.h): one 64-bit word, like a
// return address, so the stack table, the stack cache, reports' grouping by stack content and
// every format that carries frames carry Python frames unchanged. Header-only, for both ends: the
// library writes these words, the `heapkeeper` binary (analysis/python_names.h) reads them.
//
//   bit 63       1: a Python frame (no x86-64 user-space return address has it set)
//   bits 43..62  the instruction's offset in code units (2 bytes) from the start of the bytecode,
//                at most kMaxCodeUnit (a larger offset is recorded as kMaxCodeUnit)
//   bits 0..42   the code key: a hash of the code object's address, of the objects naming it
//                (qualified name, file name, line table) and of its first line and length, under
//                which the library keeps the code's names (allocator/python_code_table.h). A code
//                object that died and whose address was reused by code from another file, at
//                another line or of another length gets another key (python_frames.cpp's
//                code_key says what still shares one).
#pragma once

#include <cstdint>

namespace heapkeeper::python_word {

inline constexpr uint64_t kTag = uint64_t{1} << 63;
inline constexpr unsigned kCodeUnitShift = 43;
inline constexpr uint64_t kMaxCodeUnit = (uint64_t{1} << 20) - 1;
inline constexpr uint64_t kKeyMask = (uint64_t{1} << kCodeUnitShift) - 1;

constexpr bool is_python(uint64_t word) { return (word & kTag) != 0; }
constexpr uint64_t code_key(uint64_t word) { return word & kKeyMask; }
constexpr uint32_t code_unit(uint64_t word) { return static_cast<uint32_t>((word >> kCodeUnitShift) & kMaxCodeUnit); }
constexpr uint64_t make(uint64_t key, uint64_t unit) {
  return kTag | ((unit < kMaxCodeUnit ? unit : kMaxCodeUnit) << kCodeUnitShift) | (key & kKeyMask);
}

}  // namespace heapkeeper::python_word
