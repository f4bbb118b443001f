// Unit tests for SignalSafePool (allocator/signal_safe_pool.h): the lock-free memory signal
// handlers get while they interrupt jemalloc. Freed blocks, aligned and large ones too, are reused by
// their size class, zeroed, and a double or invalid free is told apart from a free.
//
// Each test makes a pool of its own (a 256 MiB reservation, mapped NORESERVE).
#include "allocator/signal_safe_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <thread>
#include <vector>

namespace heapkeeper::alloc {
namespace {

using FreeResult = SignalSafePool::FreeResult;

std::unique_ptr<SignalSafePool> make_pool() {
  auto pool = std::make_unique<SignalSafePool>();
  if (!pool->initialize()) return nullptr;
  return pool;
}

bool all_zero(const void* p, size_t n) {
  const auto* bytes = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i)
    if (bytes[i] != 0) return false;
  return true;
}

TEST(SignalSafePoolTest, AFreedBlockServesTheNextRequestOfItsClassZeroed) {
  auto pool = make_pool();
  ASSERT_NE(pool, nullptr);
  void* first = pool->allocate(100, 16, false);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % 16, 0u);
  EXPECT_EQ(pool->size_of(first), 100u);
  std::memset(first, 0xab, 100);
  const size_t used = pool->used();
  EXPECT_EQ(pool->free(first), FreeResult::kFreed);
  // 120 bytes: the same class (128) as 100.
  void* again = pool->allocate(120, 16, true);
  EXPECT_EQ(again, first);
  EXPECT_EQ(pool->size_of(again), 120u);
  EXPECT_TRUE(all_zero(again, 128));
  EXPECT_EQ(pool->used(), used) << "reused, not taken from the range";
  // Another class does not take it.
  void* other = pool->allocate(300, 16, false);
  EXPECT_NE(other, first);
}

TEST(SignalSafePoolTest, AllocatingAndFreeingInALoopDoesNotUseTheRangeUp) {
  auto pool = make_pool();
  ASSERT_NE(pool, nullptr);
  // 64 KiB blocks, 8,192 rounds: 512 MiB if nothing were reused, twice the range.
  for (int round = 0; round < 8192; ++round) {
    void* a = pool->allocate(64 * 1024, 16, false);
    void* b = pool->allocate(40, 16, false);
    ASSERT_NE(a, nullptr) << "round " << round;
    ASSERT_NE(b, nullptr) << "round " << round;
    std::memset(a, 1, 64 * 1024);
    ASSERT_EQ(pool->free(a), FreeResult::kFreed);
    ASSERT_EQ(pool->free(b), FreeResult::kFreed);
  }
  EXPECT_LT(pool->used(), size_t{1} << 20);
}

TEST(SignalSafePoolTest, DoubleAndInvalidFreesAreToldAndChangeNothing) {
  auto pool = make_pool();
  ASSERT_NE(pool, nullptr);
  auto* block = static_cast<char*>(pool->allocate(48, 16, false));
  ASSERT_NE(block, nullptr);
  EXPECT_EQ(pool->free(block + 16), FreeResult::kInvalid) << "inside a block";
  EXPECT_EQ(pool->free(block + 1), FreeResult::kInvalid) << "misaligned";
  EXPECT_EQ(pool->free(reinterpret_cast<void*>(pool->range().base() + (size_t{128} << 20))), FreeResult::kInvalid)
      << "past what was handed out";
  EXPECT_EQ(pool->free(block), FreeResult::kFreed);
  EXPECT_EQ(pool->free(block), FreeResult::kDoubleFree);
  // The double free did not put the block on its list twice: two allocations get two blocks.
  void* one = pool->allocate(48, 16, false);
  void* two = pool->allocate(48, 16, false);
  EXPECT_EQ(one, block);
  EXPECT_NE(two, block);
}

TEST(SignalSafePoolTest, AlignedAndLargeBlocksAreReusedAlignedAndZeroed) {
  auto pool = make_pool();
  ASSERT_NE(pool, nullptr);
  // An aligned block, a 2 MiB one (its whole pages given back on free) and a 64-byte one.
  for (int round = 0; round < 300; ++round) {
    auto* aligned = static_cast<unsigned char*>(pool->allocate(64 * 1024, 4096, false));
    auto* large = static_cast<unsigned char*>(pool->allocate(size_t{2} << 20, 16, false));
    auto* cache_line = static_cast<unsigned char*>(pool->allocate(40, 64, false));
    ASSERT_NE(aligned, nullptr) << "round " << round;
    ASSERT_NE(large, nullptr) << "round " << round;
    ASSERT_NE(cache_line, nullptr) << "round " << round;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(aligned) % 4096, 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(cache_line) % 64, 0u);
    EXPECT_EQ(pool->size_of(aligned), 64u * 1024);
    if (round < 2) {
      ASSERT_TRUE(all_zero(aligned, 64 * 1024));
      ASSERT_TRUE(all_zero(large, size_t{2} << 20));
      ASSERT_TRUE(all_zero(cache_line, 40));
    }
    std::memset(aligned, 0x5a, 64 * 1024);
    std::memset(large, 0x5a, size_t{2} << 20);
    std::memset(cache_line, 0x5a, 40);
    ASSERT_EQ(pool->free(aligned), FreeResult::kFreed);
    ASSERT_EQ(pool->free(large), FreeResult::kFreed);
    ASSERT_EQ(pool->free(cache_line), FreeResult::kFreed);
  }
  // 300 rounds of 2 MiB alone are 600 MiB: reused, not taken from the 256 MiB range.
  EXPECT_LT(pool->used(), size_t{8} << 20);
}

TEST(SignalSafePoolTest, ASecondFreeOfAnAlignedBlockIsADoubleFreeAndItsWordsGoWhenReused) {
  auto pool = make_pool();
  ASSERT_NE(pool, nullptr);
  // 32-byte alignment in 64-byte class blocks 80 bytes apart: some user pointers lie at the
  // payload, the others 16 bytes in (fresh payloads, 80 bytes apart, alternate between 32-byte
  // boundaries and 16 bytes past them).
  std::vector<unsigned char*> blocks;
  for (int i = 0; i < 8; ++i) {
    auto* block = static_cast<unsigned char*>(pool->allocate(40, 32, false));
    ASSERT_NE(block, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(block) % 32, 0u);
    std::memset(block, 0x77, 40);
    blocks.push_back(block);
  }
  for (unsigned char* block : blocks) {
    ASSERT_EQ(pool->free(block), FreeResult::kFreed);
    EXPECT_EQ(pool->free(block), FreeResult::kDoubleFree) << "a second free, the block on its list";
  }
  // Handed out again unaligned: whole class blocks of zeros, the aligned uses' words gone, and a
  // free of an old aligned pointer inside one is no double free of it.
  std::vector<unsigned char*> again;
  for (int i = 0; i < 8; ++i) {
    auto* block = static_cast<unsigned char*>(pool->allocate(64, 16, false));
    ASSERT_NE(block, nullptr);
    EXPECT_TRUE(all_zero(block, 64)) << "block " << i;
    again.push_back(block);
  }
  for (unsigned char* block : blocks) {
    bool inside_a_live_block = false;
    for (unsigned char* live : again) inside_a_live_block |= block > live && block < live + 64;
    if (inside_a_live_block) {
      EXPECT_EQ(pool->free(block), FreeResult::kInvalid);
    }
  }
  for (unsigned char* block : again) {
    EXPECT_EQ(pool->free(block), FreeResult::kFreed);
    EXPECT_EQ(pool->free(block), FreeResult::kDoubleFree);
  }
  // And unaligned first, aligned after: a free of the class block's payload is an invalid one.
  auto* aligned = static_cast<unsigned char*>(pool->allocate(40, 32, false));
  ASSERT_NE(aligned, nullptr);
  EXPECT_TRUE(all_zero(aligned, 40));
  for (unsigned char* block : again) {
    if (aligned > block && aligned < block + 64) {
      EXPECT_EQ(pool->free(block), FreeResult::kInvalid);
    }
  }
  EXPECT_EQ(pool->free(aligned), FreeResult::kFreed);
  EXPECT_EQ(pool->free(aligned), FreeResult::kDoubleFree);
}

TEST(SignalSafePoolTest, BlocksAboveTheLargestClassAreNeverReusedButFreedOnce) {
  auto pool = make_pool();
  ASSERT_NE(pool, nullptr);
  const size_t huge = (size_t{1} << SignalSafePool::kLargestClassShift) + 1;
  auto* block = static_cast<unsigned char*>(pool->allocate(huge, 16, false));
  ASSERT_NE(block, nullptr);
  std::memset(block, 7, 4096);
  EXPECT_EQ(pool->free(block), FreeResult::kFreed);
  EXPECT_TRUE(all_zero(block, 4096)) << "emptied: its stale words must not hold other blocks";
  EXPECT_EQ(pool->free(block), FreeResult::kDoubleFree);
  EXPECT_NE(pool->allocate(huge, 16, false), block);
}

TEST(SignalSafePoolTest, ThreadsAllocatingAndFreeingNeverShareABlock) {
  auto pool = make_pool();
  ASSERT_NE(pool, nullptr);
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<unsigned char*> held;
      for (int i = 0; i < 20000 && !failed; ++i) {
        auto* p = static_cast<unsigned char*>(pool->allocate(16 + (i % 3) * 16, 16, false));
        if (p == nullptr || !all_zero(p, 16)) failed = true;
        if (p == nullptr) break;
        std::memset(p, 0x10 + t, 16);  // a block two threads held would show the other's mark
        held.push_back(p);
        if (held.size() == 8) {
          for (unsigned char* q : held) {
            if (q[0] != 0x10 + t || q[15] != 0x10 + t || pool->free(q) != FreeResult::kFreed) failed = true;
          }
          held.clear();
        }
      }
      for (unsigned char* q : held) pool->free(q);
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_FALSE(failed);
  EXPECT_LT(pool->used(), size_t{1} << 20);
}

}  // namespace
}  // namespace heapkeeper::alloc
