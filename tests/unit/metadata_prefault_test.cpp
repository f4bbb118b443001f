// Unit tests for the pre-faulting of jemalloc's fresh metadata blocks (allocator/metadata_prefault.h):
// which block an announcement pre-faults, how much of it, and what it leaves alone. Residency is
// read with mincore on fresh anonymous mappings, whose pages are present only once written or
// populated.
#include "allocator/metadata_prefault.h"

#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace heapkeeper::alloc {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kBlock = size_t{2} << 20;
constexpr size_t kBootPages = 59;  // metadata_prefault.cpp's measured prefixes
constexpr size_t kTrackedPages = 23;

#ifndef MADV_POPULATE_WRITE
constexpr int MADV_POPULATE_WRITE = 23;
#endif

// A fresh block at a 2 MiB boundary, as jemalloc's base blocks are; unmapped by the destructor.
class FreshBlock {
 public:
  FreshBlock() {
    raw_ = ::mmap(nullptr, 2 * kBlock, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw_ == MAP_FAILED) raw_ = nullptr;
    const auto start = reinterpret_cast<uintptr_t>(raw_);
    block_ = reinterpret_cast<char*>((start + kBlock - 1) & ~(kBlock - 1));
    // Where transparent huge pages are "always", the first page populated would bring the whole
    // aligned block in as one huge page (as jemalloc's first write would): counted page by page
    // here, whatever the machine's setting.
    if (raw_ != nullptr) ::madvise(block_, kBlock, MADV_NOHUGEPAGE);
  }
  ~FreshBlock() {
    if (raw_ != nullptr) ::munmap(raw_, 2 * kBlock);
  }
  FreshBlock(const FreshBlock&) = delete;
  FreshBlock& operator=(const FreshBlock&) = delete;
  bool ok() const { return raw_ != nullptr; }
  char* start() const { return block_; }

  // Pages of the block present in memory.
  std::vector<bool> resident() const {
    std::vector<unsigned char> flags(kBlock / kPage);
    std::vector<bool> present(flags.size(), false);
    if (::mincore(block_, kBlock, flags.data()) != 0) return present;
    for (size_t i = 0; i < flags.size(); ++i) present[i] = (flags[i] & 1) != 0;
    return present;
  }
  size_t resident_count() const {
    size_t n = 0;
    for (bool page : resident()) n += page ? 1 : 0;
    return n;
  }

 private:
  void* raw_ = nullptr;
  char* block_ = nullptr;
};

// Whether this kernel takes MADV_POPULATE_WRITE (5.14 and later): without it the advice is refused
// and the pages fault in as before, which these tests cannot tell from a bug.
bool kernel_populates() {
  void* page = ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return false;
  const bool ok = ::madvise(page, kPage, MADV_POPULATE_WRITE) == 0;
  ::munmap(page, kPage);
  return ok;
}

#define REQUIRE_POPULATE()                                                             \
  do {                                                                                 \
    if (!kernel_populates()) GTEST_SKIP() << "this kernel has no MADV_POPULATE_WRITE"; \
  } while (0)

TEST(MetadataPrefault, AnAnnouncedTrackedBlockGetsItsFirstPagesAndNoMore) {
  REQUIRE_POPULATE();
  FreshBlock block;
  ASSERT_TRUE(block.ok());
  ASSERT_EQ(block.resident_count(), 0u);
  {
    PrefaultNextMetadataBlock announced(MetadataBlock::kTrackedArena, true);
    prefault_if_announced(MetadataBlock::kTrackedArena, block.start(), kBlock);
  }
  const std::vector<bool> present = block.resident();
  for (size_t i = 0; i < present.size(); ++i) EXPECT_EQ(present[i], i < kTrackedPages) << "page " << i;
}

TEST(MetadataPrefault, TheBootBlockGetsItsLongerPrefix) {
  REQUIRE_POPULATE();
  FreshBlock block;
  ASSERT_TRUE(block.ok());
  {
    PrefaultNextMetadataBlock announced(MetadataBlock::kBoot, true);
    prefault_if_announced(MetadataBlock::kBoot, block.start(), kBlock);
  }
  EXPECT_EQ(block.resident_count(), kBootPages);
  EXPECT_TRUE(block.resident()[kBootPages - 1]);
}

TEST(MetadataPrefault, OnlyTheNextBlockOfTheAnnouncedKind) {
  REQUIRE_POPULATE();
  FreshBlock other_kind, first, second;
  ASSERT_TRUE(other_kind.ok() && first.ok() && second.ok());
  PrefaultNextMetadataBlock announced(MetadataBlock::kBoot, true);
  // A tracked extent mapped meanwhile (another hook) is not the block, and leaves the announcement.
  prefault_if_announced(MetadataBlock::kTrackedArena, other_kind.start(), kBlock);
  EXPECT_EQ(other_kind.resident_count(), 0u);
  prefault_if_announced(MetadataBlock::kBoot, first.start(), kBlock);
  EXPECT_EQ(first.resident_count(), kBootPages);
  // Taken: the next block jemalloc maps (b0 growing, a radix-tree leaf) faults in as it is used.
  prefault_if_announced(MetadataBlock::kBoot, second.start(), kBlock);
  EXPECT_EQ(second.resident_count(), 0u);
}

TEST(MetadataPrefault, AMappingThatCannotBeTheBlockIsPassedOver) {
  REQUIRE_POPULATE();
  FreshBlock block;
  ASSERT_TRUE(block.ok());
  PrefaultNextMetadataBlock announced(MetadataBlock::kTrackedArena, true);
  // jemalloc's first try at a base block that is not at a 2 MiB boundary, and a mapping smaller
  // than a block: neither is pre-faulted, and the announcement waits for the block itself.
  prefault_if_announced(MetadataBlock::kTrackedArena, block.start() + kPage, kBlock);
  prefault_if_announced(MetadataBlock::kTrackedArena, block.start(), kBlock / 2);
  EXPECT_EQ(block.resident_count(), 0u);
  prefault_if_announced(MetadataBlock::kTrackedArena, block.start(), kBlock);
  EXPECT_EQ(block.resident_count(), kTrackedPages);
}

TEST(MetadataPrefault, NothingWithoutAnAllowedAnnouncementInScope) {
  REQUIRE_POPULATE();
  FreshBlock unannounced, refused, after_scope;
  ASSERT_TRUE(unannounced.ok() && refused.ok() && after_scope.ok());
  prefault_if_announced(MetadataBlock::kTrackedArena, unannounced.start(), kBlock);
  EXPECT_EQ(unannounced.resident_count(), 0u);
  {
    // Not allowed: a tracked arena made after start-up where a seccomp filter may check madvise.
    PrefaultNextMetadataBlock announced(MetadataBlock::kTrackedArena, false);
    prefault_if_announced(MetadataBlock::kTrackedArena, refused.start(), kBlock);
  }
  EXPECT_EQ(refused.resident_count(), 0u);
  { PrefaultNextMetadataBlock announced(MetadataBlock::kTrackedArena, true); }
  // The scope ended without a block (jemalloc found room in a block it had): nothing carries over.
  prefault_if_announced(MetadataBlock::kTrackedArena, after_scope.start(), kBlock);
  EXPECT_EQ(after_scope.resident_count(), 0u);
}

}  // namespace
}  // namespace heapkeeper::alloc
