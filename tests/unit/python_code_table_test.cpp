// The table of Python code names (allocator/python_code_table.h) on code objects laid out as
// CPython 3.11 lays them out (allocator/python_layout.h): what it copies, and that a full table is
// given up at once instead of searched on every allocation.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "allocator/python_code_table.h"
#include "allocator/python_layout.h"

namespace heapkeeper::alloc {
namespace {

// Stand-ins for the interpreter's type objects: only their addresses are compared.
alignas(8) char g_code_type[8], g_str_type[8], g_bytes_type[8], g_other_type[8];

uintptr_t address(const void* p) { return reinterpret_cast<uintptr_t>(p); }

// Python objects built byte by byte at the layout's offsets, kept alive by the fixture.
class FakeInterpreter {
 public:
  explicit FakeInterpreter(const HeapkeeperPythonLayout& layout) : l_(layout) {}

  uintptr_t str(std::string_view text) {  // a compact ASCII str
    char* o = object(l_.ascii_data + text.size() + 1, g_str_type);
    const auto length = static_cast<int64_t>(text.size());
    std::memcpy(o + l_.unicode_length, &length, sizeof length);
    const uint32_t state = (1u << l_.state_kind_shift) | (1u << l_.state_compact_bit) | (1u << l_.state_ascii_bit);
    std::memcpy(o + l_.unicode_state, &state, sizeof state);
    std::memcpy(o + l_.ascii_data, text.data(), text.size());
    return address(o);
  }
  uintptr_t bytes(std::string_view data) {
    char* o = object(l_.bytes_data + data.size() + 1, g_bytes_type);
    const auto size = static_cast<int64_t>(data.size());
    std::memcpy(o + l_.var_size, &size, sizeof size);
    std::memcpy(o + l_.bytes_data, data.data(), data.size());
    return address(o);
  }
  uintptr_t code(std::string_view qualname, std::string_view filename, int32_t first_line, std::string_view table,
                 const void* type = g_code_type) {
    char* o = object(l_.code_adaptive + 16, type);
    const uintptr_t q = str(qualname), f = str(filename), t = bytes(table);
    std::memcpy(o + l_.code_qualname, &q, sizeof q);
    std::memcpy(o + l_.code_filename, &f, sizeof f);
    std::memcpy(o + l_.code_linetable, &t, sizeof t);
    std::memcpy(o + l_.code_first_line, &first_line, sizeof first_line);
    return address(o);
  }

 private:
  char* object(size_t size, const void* type) {
    objects_.push_back(std::make_unique<uint64_t[]>(size / 8 + 1));
    char* o = reinterpret_cast<char*>(objects_.back().get());
    const uintptr_t t = address(type);
    std::memcpy(o + l_.object_type, &t, sizeof t);
    return o;
  }
  const HeapkeeperPythonLayout& l_;
  std::vector<std::unique_ptr<uint64_t[]>> objects_;
};

class PythonCodeTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    layout_ = heapkeeper_python311_layout();
    if (layout_ == nullptr) GTEST_SKIP() << "built without CPython 3.11's headers";
    fake_ = std::make_unique<FakeInterpreter>(*layout_);
    table_ = std::make_unique<PythonCodeTable>();
    ASSERT_TRUE(table_->initialize(layout_, address(g_code_type), address(g_str_type), address(g_bytes_type)));
  }
  const HeapkeeperPythonLayout* layout_ = nullptr;
  std::unique_ptr<FakeInterpreter> fake_;
  std::unique_ptr<PythonCodeTable> table_;
};

TEST_F(PythonCodeTableTest, CopiesNameFileFirstLineAndLineTable) {
  table_->remember(42, fake_->code("Cache.fill", "/srv/app.py", 12, "\x80\x01"));
  const PythonCodeRecord* record = table_->find(42);
  ASSERT_NE(record, nullptr);
  EXPECT_EQ(std::string(record->qualname(), record->qualname_length), "Cache.fill");
  EXPECT_EQ(std::string(record->filename(), record->filename_length), "/srv/app.py");
  EXPECT_EQ(record->first_line, 12);
  EXPECT_EQ(std::string(record->linetable(), record->linetable_length), "\x80\x01");
  EXPECT_EQ(table_->find(43), nullptr);
}

// A program that makes code by the hundred thousand (exec in a loop) fills the table: from then on
// a new code is refused at once (its frames read "??"), and the codes taken before keep their names.
TEST_F(PythonCodeTableTest, AFullTableRefusesNewCodesAtOnceAndKeepsTheOldOnes) {
  table_->remember(1, fake_->code("kept", "kept.py", 3, "\x80"));
  // Codes that are not code objects still claim their key (as a key that dies mid-copy would).
  const uintptr_t not_code = fake_->code("x", "x.py", 1, "\x80", g_other_type);
  constexpr uint64_t kFill = (uint64_t{1} << 18) / 8 * 7;  // seven eighths of the table's slots
  uint64_t key = 2;
  for (; key < 2 + kFill; ++key) table_->remember(key, not_code);
  EXPECT_TRUE(table_->full());

  table_->remember(key + 1, fake_->code("late", "late.py", 7, "\x80"));
  EXPECT_EQ(table_->find(key + 1), nullptr);
  const PythonCodeRecord* kept = table_->find(1);
  ASSERT_NE(kept, nullptr);
  EXPECT_EQ(std::string(kept->qualname(), kept->qualname_length), "kept");
  EXPECT_EQ(table_->count(), 1u);
}

// Codes fill the 4K-slot table first, then the larger ones: a code is found whichever table took
// it, and remembering it again takes no second slot.
TEST_F(PythonCodeTableTest, CodesInEveryTableAreFound) {
  constexpr uint64_t kCodes = 12'000;  // past the 4K and 16K tables' share: into the 64K one
  const uintptr_t code = fake_->code("f", "many.py", 5, "\x80");
  for (uint64_t key = 1; key <= kCodes; ++key) table_->remember(key * 7919, code);
  EXPECT_EQ(table_->count(), kCodes);
  for (uint64_t key = 1; key <= kCodes; ++key) {
    table_->remember(key * 7919, code);
    const PythonCodeRecord* record = table_->find(key * 7919);
    ASSERT_NE(record, nullptr) << key;
    EXPECT_EQ(record->key, key * 7919);
  }
  EXPECT_EQ(table_->count(), kCodes) << "a known code is not copied again";
  EXPECT_EQ(table_->find(7919 * (kCodes + 1)), nullptr);
}

}  // namespace
}  // namespace heapkeeper::alloc
