// Implementation of the table of Python code names (see python_code_table.h).
#include "allocator/python_code_table.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstring>

#include "allocator/internal_mappings.h"
#include "allocator/python_layout.h"

namespace heapkeeper::alloc {
namespace {

PythonCodeTable g_python_code_table;

constexpr uint64_t kClaimed = uint64_t{1} << 63;
// Longest name or path copied, in code points; longer ones are cut. The copy is made on the
// allocating thread's stack before it takes arena space, so it must stay small.
constexpr size_t kMaxTextBytes = 1024;
constexpr size_t kMaxLinetableBytes = size_t{1} << 20;

template <typename T>
T load(uintptr_t address) {
  T value;
  std::memcpy(&value, reinterpret_cast<const void*>(address), sizeof value);
  return value;
}

size_t put_utf8(uint32_t code_point, char* out, size_t at, size_t capacity) {
  char bytes[4];
  size_t n = 0;
  if (code_point >= 0xDC80 && code_point <= 0xDCFF) {
    bytes[n++] = static_cast<char>(code_point - 0xDC00);  // surrogateescape: the byte itself
  } else if (code_point < 0x80) {
    bytes[n++] = static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    bytes[n++] = static_cast<char>(0xC0 | (code_point >> 6));
    bytes[n++] = static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    bytes[n++] = static_cast<char>(0xE0 | (code_point >> 12));
    bytes[n++] = static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    bytes[n++] = static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    bytes[n++] = static_cast<char>(0xF0 | ((code_point >> 18) & 0x07));
    bytes[n++] = static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    bytes[n++] = static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    bytes[n++] = static_cast<char>(0x80 | (code_point & 0x3F));
  }
  if (at + n > capacity) return at;
  std::memcpy(out + at, bytes, n);
  return at + n;
}

}  // namespace

PythonCodeTable& python_code_table() { return g_python_code_table; }

bool PythonCodeTable::initialize(const HeapkeeperPythonLayout* layout, uintptr_t code_type, uintptr_t str_type,
                                 uintptr_t bytes_type) {
  layout_ = layout;
  code_type_ = code_type;
  str_type_ = str_type;
  bytes_type_ = bytes_type;
  for (unsigned t = 0; t < kTables; ++t) {
    tables_[t] = static_cast<Slot*>(map_internal(sizeof(Slot) << table_shift(t), true));
    if (tables_[t] == nullptr) return false;
  }
  arena_bytes_ = kArenaBytes;
  rlimit limit{};
  if (getrlimit(RLIMIT_AS, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
    arena_bytes_ = std::clamp<size_t>(limit.rlim_cur / 256 & ~size_t{4095}, kMinArenaBytes, kArenaBytes);
  arena_ = static_cast<char*>(map_internal(arena_bytes_, true));
  return arena_ != nullptr;
}

// A str object's text in UTF-8; 0 bytes for anything that is not a compact str (code objects'
// names and paths always are).
size_t PythonCodeTable::copy_text(uintptr_t object, char* out, size_t capacity) const {
  if (object == 0 || (object & 7) != 0 || load<uintptr_t>(object + layout_->object_type) != str_type_) return 0;
  const uint32_t state = load<uint32_t>(object + layout_->unicode_state);
  if ((state >> layout_->state_compact_bit & 1) == 0) return 0;
  const bool ascii = (state >> layout_->state_ascii_bit & 1) != 0;
  const uint32_t kind = (state & layout_->state_kind_mask) >> layout_->state_kind_shift;
  if (kind != 1 && kind != 2 && kind != 4) return 0;
  const auto length = load<int64_t>(object + layout_->unicode_length);
  if (length <= 0) return 0;
  const uintptr_t data = object + (ascii ? layout_->ascii_data : layout_->compact_data);
  size_t at = 0;
  for (int64_t i = 0; i < length && at + 4 <= capacity; ++i) {
    uint32_t code_point = 0;
    if (kind == 1) code_point = load<uint8_t>(data + static_cast<uintptr_t>(i));
    if (kind == 2) code_point = load<uint16_t>(data + 2 * static_cast<uintptr_t>(i));
    if (kind == 4) code_point = load<uint32_t>(data + 4 * static_cast<uintptr_t>(i));
    at = put_utf8(code_point, out, at, capacity);
  }
  return at;
}

template <typename Visit>
bool PythonCodeTable::visit_claims(uint64_t key, Visit&& visit) const {
  const uint64_t wanted = key | kClaimed;
  const uint64_t hash = key * 0x9e3779b97f4a7c15ull;
  // Only the tables that have begun taking claims: a larger one untouched so far would be read
  // for nothing, each lookup of a new key mapping one more of its pages to the zero page (python3's
  // churn with 516 codes read 2.7 MiB of them, 700 page faults). A claim racing this lookup into a
  // table it skips is the race remember() already allows: the key is claimed twice.
  const uint32_t claimed = claimed_.load(std::memory_order_acquire);
  for (unsigned t = 0; t < kTables && (t == 0 || claimed >= claims_before(t)); ++t) {
    const uint64_t mask = (uint64_t{1} << table_shift(t)) - 1;
    for (uint64_t slot = hash >> (64 - table_shift(t)), probes = 0; probes <= mask;
         slot = (slot + 1) & mask, ++probes) {
      const uint64_t seen = tables_[t][slot].key.load(std::memory_order_acquire);
      if (seen == 0) break;
      if (seen != wanted) continue;
      if (visit(tables_[t][slot])) return true;
      break;  // one claim per table
    }
  }
  return false;
}

void PythonCodeTable::remember(uint64_t key, uintptr_t code) {
  if (tables_[kTables - 1] == nullptr || full()) return;
  const uint64_t wanted = key | kClaimed;
  const uint64_t hash = key * 0x9e3779b97f4a7c15ull;
  // Known already, in any table (the smallest first: it holds the codes seen first, which are the
  // ones most stacks go through)?
  if (visit_claims(key, [](const Slot&) { return true; })) return;
  // Claim only below the limit; threads racing past it may overshoot it by one each.
  const uint32_t claimed = claimed_.load(std::memory_order_relaxed);
  if (claimed >= kMaxClaimed) {
    full_.store(true, std::memory_order_relaxed);
    return;
  }
  unsigned t = kTables - 1;
  while (t > 0 && claimed < claims_before(t)) --t;
  // In the table taking claims now. A thread that read a smaller count may claim the same key in a
  // smaller table meanwhile: then both copies are made, and find() returns the first published.
  const uint64_t mask = (uint64_t{1} << table_shift(t)) - 1;
  Slot* const table = tables_[t];
  uint64_t slot = hash >> (64 - table_shift(t));
  for (uint64_t probes = 0;; slot = (slot + 1) & mask) {
    if (++probes > mask) return;  // full (kMaxClaimed keeps it from coming to that)
    uint64_t seen = table[slot].key.load(std::memory_order_acquire);
    if (seen == wanted) return;
    if (seen != 0) continue;
    if (table[slot].key.compare_exchange_strong(seen, wanted, std::memory_order_acq_rel)) break;
    if (seen == wanted) return;  // another thread claimed it first
  }
  claimed_.fetch_add(1, std::memory_order_relaxed);
  // Ours to fill: copy, then publish. Other threads meanwhile find the key claimed and go on.
  if (load<uintptr_t>(code + layout_->object_type) != code_type_) return;
  char qualname[kMaxTextBytes], filename[kMaxTextBytes];
  const size_t qualname_length = copy_text(load<uintptr_t>(code + layout_->code_qualname), qualname, sizeof qualname);
  const size_t filename_length = copy_text(load<uintptr_t>(code + layout_->code_filename), filename, sizeof filename);
  const uintptr_t linetable = load<uintptr_t>(code + layout_->code_linetable);
  size_t linetable_length = 0;
  if (linetable != 0 && (linetable & 7) == 0 && load<uintptr_t>(linetable + layout_->object_type) == bytes_type_) {
    const auto size = load<int64_t>(linetable + layout_->var_size);
    if (size > 0 && static_cast<size_t>(size) <= kMaxLinetableBytes) linetable_length = static_cast<size_t>(size);
  }
  const size_t bytes =
      (sizeof(PythonCodeRecord) + qualname_length + filename_length + linetable_length + 7) & ~size_t{7};
  const size_t offset = arena_next_.fetch_add(bytes, std::memory_order_relaxed);
  if (offset + bytes > arena_bytes_) {
    full_.store(true, std::memory_order_relaxed);
    return;
  }
  auto* record = reinterpret_cast<PythonCodeRecord*>(arena_ + offset);
  record->key = key;
  record->first_line = load<int32_t>(code + layout_->code_first_line);
  record->qualname_length = static_cast<uint32_t>(qualname_length);
  record->filename_length = static_cast<uint32_t>(filename_length);
  record->linetable_length = static_cast<uint32_t>(linetable_length);
  char* text = reinterpret_cast<char*>(record + 1);
  std::memcpy(text, qualname, qualname_length);
  std::memcpy(text + qualname_length, filename, filename_length);
  if (linetable_length != 0)
    std::memcpy(text + qualname_length + filename_length,
                reinterpret_cast<const void*>(linetable + layout_->bytes_data), linetable_length);
  table[slot].record.store(offset + 1, std::memory_order_release);
  count_.fetch_add(1, std::memory_order_relaxed);
}

const PythonCodeRecord* PythonCodeTable::find(uint64_t key) const {
  if (tables_[kTables - 1] == nullptr) return nullptr;
  const PythonCodeRecord* found = nullptr;
  visit_claims(key, [&](const Slot& slot) {
    const uint64_t offset = slot.record.load(std::memory_order_acquire);
    if (offset != 0) found = reinterpret_cast<const PythonCodeRecord*>(arena_ + offset - 1);
    return found != nullptr;  // claimed, not yet published here: a copy in another table may be
  });
  return found;
}

}  // namespace heapkeeper::alloc
