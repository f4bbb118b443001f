// PythonCodeTable: what names each Python code object that a recorded stack went through — its
// qualified name, file, first line and location table — copied out of the interpreter the first
// time a stack through it is interned, so that a report made after the code object died (a module
// unloaded, a function made by exec and dropped) still names it. Keyed by the code key of the
// frame word (allocator/python_frame_word.h), which changes when a code object's address is reused
// by other code.
//
// Inside the traced process, off the hot path: a stack's codes are remembered only when a new
// Python stack is interned. Lock-free: a key is claimed in an open-addressing table with one
// compare-and-swap, its record copied into a bump arena and then published; a reader skips a record
// not yet published. The table is four tables of 4K, 16K, 64K and 256K slots, each taking claims
// once the smaller ones are half full, so a program with a few hundred codes touches 64 KiB of slots,
// not all of a table sized for a quarter million (random keys touch every page of a table once
// there are about as many keys as pages). All memory is mapped at start-up (no syscall, no tracked
// heap afterwards); a full table or arena leaves later codes unnamed ("??"), never fails an
// allocation, and costs nothing once full (full()).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

struct HeapkeeperPythonLayout;

namespace heapkeeper::alloc {

// A code's names as copied: qualname and filename in UTF-8 (a lone surrogate U+DC80..U+DCFF, which is
// how Python keeps a path's undecodable byte, becomes that byte again), the location table as
// co_linetable held it. The bytes follow the record.
struct PythonCodeRecord {
  uint64_t key;
  int32_t first_line;
  uint32_t qualname_length, filename_length, linetable_length;
  const char* qualname() const { return reinterpret_cast<const char*>(this + 1); }
  const char* filename() const { return qualname() + qualname_length; }
  const char* linetable() const { return filename() + filename_length; }
};

class PythonCodeTable {
 public:
  // Maps the table: false when the memory cannot be had (Python frames then stay unnamed).
  bool initialize(const HeapkeeperPythonLayout* layout, uintptr_t code_type, uintptr_t str_type, uintptr_t bytes_type);
  // Copies the names of the code object at `code` under `key`, unless the key is known. `code` must
  // be alive: a frame of the calling thread's stack holds it.
  void remember(uint64_t key, uintptr_t code);
  // The record of `key`, or null when it was never remembered (or is still being copied).
  const PythonCodeRecord* find(uint64_t key) const;
  uint32_t count() const { return count_.load(std::memory_order_relaxed); }
  // Whether no more codes are taken: the slots a key may claim are all claimed, or the arena is
  // spent. A full table is given up at once, not searched: remember() runs on the allocating
  // thread, and a search of a full open-addressing table reads every slot (a program that made
  // 600,000 functions ran 5x slower once the table filled).
  bool full() const { return full_.load(std::memory_order_relaxed); }

  static constexpr unsigned kSlotsShift = 18;  // the largest table's
  // Slots claimed at most: seven eighths of the largest table's, so a search for a key not there
  // ends at an empty slot after a few probes in each table (the smaller ones are at most half full;
  // linear probing's expected run at seven eighths is about 32).
  static constexpr uint32_t kMaxClaimed = (uint32_t{1} << kSlotsShift) / 8 * 7;

 private:
  // The names' arena: 64 MiB of address space, or 1/256 of an address-space limit (ulimit -v),
  // at least 2 MiB, so a limited program keeps its address space for itself.
  static constexpr size_t kArenaBytes = size_t{64} << 20;
  static constexpr size_t kMinArenaBytes = size_t{2} << 20;
  size_t arena_bytes_ = 0;
  size_t copy_text(uintptr_t object, char* out, size_t capacity) const;

  const HeapkeeperPythonLayout* layout_ = nullptr;
  uintptr_t code_type_ = 0, str_type_ = 0, bytes_type_ = 0;
  struct Slot {
    std::atomic<uint64_t> key;     // key | kClaimed; 0: empty
    std::atomic<uint64_t> record;  // offset in the arena + 1; 0: not published
  };
  static constexpr unsigned kTables = 4;
  static constexpr unsigned table_shift(unsigned table) { return kSlotsShift - 2 * (kTables - 1 - table); }
  // Claims the smaller tables take (half their slots) before the next one takes any.
  static constexpr uint32_t claims_before(unsigned table) {
    return table == 0 ? 0 : claims_before(table - 1) + (uint32_t{1} << table_shift(table - 1)) / 2;
  }
  // The slot claimed for `key` in each table that has one, smallest table first, until `visit`
  // returns true; whether it did.
  template <typename Visit>
  bool visit_claims(uint64_t key, Visit&& visit) const;
  Slot* tables_[kTables] = {};
  char* arena_ = nullptr;
  std::atomic<size_t> arena_next_{0};
  std::atomic<uint32_t> count_{0};
  std::atomic<uint32_t> claimed_{0};
  std::atomic<bool> full_{false};
};

PythonCodeTable& python_code_table();

}  // namespace heapkeeper::alloc
