// Unit tests for FrameDictionary (allocator/frame_dictionary.h): the stack table's store of
// distinct frame words, lock-free, each named by a 32-bit index.
//
// Each test makes a dictionary of its own (the class has no global state beyond its mappings).
#include "allocator/frame_dictionary.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace heapkeeper::alloc {
namespace {

std::unique_ptr<FrameDictionary> make_dictionary(uint32_t capacity) {
  auto dictionary = std::make_unique<FrameDictionary>();
  if (!dictionary->initialize(capacity)) return nullptr;
  return dictionary;
}

TEST(FrameDictionaryTest, TheSameWordGetsTheSameIndexAndReadsBack) {
  auto dictionary = make_dictionary(1u << 16);
  ASSERT_NE(dictionary, nullptr);
  // Return addresses, a Python frame's word (bit 63), a word that looks like a chain's (bit 62),
  // and 0, which an unwinder stepping through a frame record may return.
  const std::vector<uintptr_t> words = {
      0x401234, 0x7f0012345678, uintptr_t{1} << 63 | 0x1234567, uintptr_t{1} << 62 | 42, 0, ~uintptr_t{0}};
  std::vector<uint32_t> indices;
  for (const uintptr_t word : words) {
    const uint32_t index = dictionary->intern(word);
    ASSERT_NE(index, FrameDictionary::kNoIndex) << std::hex << word;
    EXPECT_EQ(dictionary->frame(index), word);
    indices.push_back(index);
  }
  EXPECT_EQ(std::set<uint32_t>(indices.begin(), indices.end()).size(), words.size())
      << "distinct words, distinct indices";
  for (size_t i = 0; i < words.size(); ++i) EXPECT_EQ(dictionary->intern(words[i]), indices[i]);
  EXPECT_EQ(dictionary->count(), words.size());
}

TEST(FrameDictionaryTest, GrowsThroughItsLevelsAndFindsEveryWord) {
  // 300,000 words fill the first nine levels (2^10 .. 2^18 slots, half full each) and go on into the tenth.
  auto dictionary = make_dictionary(1u << 20);
  ASSERT_NE(dictionary, nullptr);
  std::mt19937_64 random(12);
  std::vector<uintptr_t> words(300000);
  for (auto& word : words) word = random();
  std::vector<uint32_t> indices;
  for (const uintptr_t word : words) indices.push_back(dictionary->intern(word));
  for (size_t i = 0; i < words.size(); ++i) {
    ASSERT_NE(indices[i], FrameDictionary::kNoIndex);
    ASSERT_EQ(dictionary->frame(indices[i]), words[i]);
    ASSERT_EQ(dictionary->intern(words[i]), indices[i]) << "word " << i << " is found, not stored again";
  }
  EXPECT_EQ(dictionary->count(), words.size());
}

TEST(FrameDictionaryTest, AFullDictionaryRefusesNewWordsAndKeepsTheOldOnes) {
  auto dictionary = make_dictionary(100);  // indices 1..99
  ASSERT_NE(dictionary, nullptr);
  std::vector<uint32_t> indices;
  for (uintptr_t word = 1000; word < 1099; ++word) indices.push_back(dictionary->intern(word));
  for (const uint32_t index : indices) ASSERT_NE(index, FrameDictionary::kNoIndex);
  EXPECT_EQ(dictionary->intern(5000), FrameDictionary::kNoIndex);
  EXPECT_EQ(dictionary->intern(5001), FrameDictionary::kNoIndex);
  EXPECT_EQ(dictionary->count(), 99u);
  for (uintptr_t word = 1000; word < 1099; ++word) EXPECT_EQ(dictionary->intern(word), indices[word - 1000]);
}

TEST(FrameDictionaryTest, ConcurrentInterningGivesEveryThreadAnIndexOfItsWord) {
  // Eight threads intern the same 20,000 words in different orders while the levels grow. A race
  // may store a word twice; every index handed out must read back the word it was asked for.
  auto dictionary = make_dictionary(1u << 20);
  ASSERT_NE(dictionary, nullptr);
  std::vector<uintptr_t> words(20000);
  for (size_t i = 0; i < words.size(); ++i) words[i] = 0x7f0000000000 + 16 * i;
  constexpr int kThreads = 8;
  std::vector<std::vector<uint32_t>> seen(kThreads, std::vector<uint32_t>(words.size()));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<size_t> order(words.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::shuffle(order.begin(), order.end(), std::mt19937(t));
      for (const size_t i : order) seen[t][i] = dictionary->intern(words[i]);
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) {
    for (size_t i = 0; i < words.size(); ++i) {
      ASSERT_NE(seen[t][i], FrameDictionary::kNoIndex);
      ASSERT_EQ(dictionary->frame(seen[t][i]), words[i]) << "thread " << t << " word " << i;
    }
  }
  // Copies only from races: at most one per thread and word, in practice a handful.
  EXPECT_LE(dictionary->count(), words.size() * kThreads);
  EXPECT_GE(dictionary->count(), words.size());
  // Afterwards each word has one index that every lookup returns.
  for (size_t i = 0; i < words.size(); ++i) EXPECT_EQ(dictionary->intern(words[i]), dictionary->intern(words[i]));
}

}  // namespace
}  // namespace heapkeeper::alloc
