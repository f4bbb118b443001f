// Unit tests for BlockMap (allocator/block_map.h): the live bitmap and page map that take any address
// of the tracked heap to the start of the live block containing it.
//
// The private heap and the block map are process singletons, initialised once for the whole suite.
// Regions come straight from heapkeeper's jemalloc (a tracked arena, no tcache), get a BlockHeader
// written where the engine writes it (at their start, or out of band for whole-page regions) and are
// recorded, exactly as the engine does. Every lookup is checked against an oracle: an ordered map of
// the blocks this test recorded, where an address belongs to the block whose
// [region, region + user offset + size) contains it (the user offset is 0 out of band).
#include "allocator/block_map.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <vector>

#include "allocator/block_header.h"
#include "allocator/jemalloc_api.h"
#include "allocator/private_heap.h"

namespace heapkeeper::alloc {
namespace {

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;

struct Block {
  size_t usable;  // jemalloc's region size
  size_t size;    // the user size written into the header
  size_t offset;  // user offset (16, or the alignment; 0 for a header out of band)
};

class BlockMapTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    static const bool ready = private_heap().initialize(0, 1) && block_map().initialize(private_heap());
    ASSERT_TRUE(ready) << "could not set up the private heap";
  }

  void TearDown() override {
    while (!live_.empty()) release(live_.begin()->first);
  }

  static const PrivateHeap& heap() { return private_heap(); }
  static BlockMap& map() { return block_map(); }

  static int class_of(size_t usable) {
    return usable <= heap().small_max() ? heap().small_class_of_usable(usable) : -1;
  }

  static uintptr_t allocate_region(size_t total, size_t alignment = 16) {
    int flags = MALLOCX_ARENA(heap().tracked_arena_for(0)) | MALLOCX_TCACHE_NONE;
    if (alignment > 16) flags |= MALLOCX_ALIGN(alignment);
    void* region = hk_je_mallocx(total, flags);
    EXPECT_NE(region, nullptr) << total;
    EXPECT_TRUE(heap().tracked().contains(region));
    return reinterpret_cast<uintptr_t>(region);
  }

  // Writes a live block's header: out of band for offset 0, else at the region's start.
  static void write_header(uintptr_t region, size_t size, size_t offset) {
    const unsigned shift = offset == 0 ? 0 : static_cast<unsigned>(__builtin_ctzll(offset));
    BlockHeader* header = offset == 0 ? map().out_of_band_header(region) : in_band_header(region);
    header->packed = BlockHeader::pack(size, shift, false, 1);
    header->stack_id = 1;
    header->sequence = 1;
  }

  // Whether the engine keeps the header of a block in a region of `usable` bytes out of band.
  static bool whole_pages(size_t usable) { return heap().out_of_band_headers() && usable % kPageSize == 0; }

  // Records a block of `size` user bytes as the engine does: in the region the engine's placement
  // asks for, or, given `total`, in a region of at least `total` bytes, the header out of band if
  // that region is whole pages.
  uintptr_t add(size_t size, size_t total = 0, size_t alignment = 16) {
    size_t offset = alignment > 16 ? alignment : 16;
    if (total == 0) {
      const BlockPlacement placement =
          alignment > 16 ? heap().place_aligned(size, alignment) : heap().place_plain(size);
      total = placement.request;
      offset = placement.offset_shift == 0 ? 0 : size_t{1} << placement.offset_shift;
    }
    const uintptr_t region = allocate_region(total, alignment);
    if (region == 0) return 0;
    const size_t usable = hk_je_sallocx(reinterpret_cast<void*>(region), 0);
    if (whole_pages(usable)) offset = 0;
    EXPECT_GE(usable, size + offset);
    EXPECT_EQ(offset == 0, whole_pages(usable)) << "the engine's placement puts the header out of band exactly "
                                                   "for whole-page regions";
    write_header(region, size, offset);
    map().record(region, usable, class_of(usable));
    EXPECT_EQ(map().header(region), offset == 0 ? map().out_of_band_header(region) : in_band_header(region));
    live_[region] = Block{usable, size, offset};
    return region;
  }

  // Frees a block as the engine does: retire first, then give the region back.
  void release(uintptr_t region) {
    EXPECT_TRUE(map().retire(region));
    BlockHeader* header = map().header(region);
    header->packed = BlockHeader::pack(header->size(), header->offset_shift(), true, 1);
    hk_je_dallocx(reinterpret_cast<void*>(region), MALLOCX_TCACHE_NONE);
    live_.erase(region);
  }

  // The region whose block contains `address`, according to what this test recorded.
  uintptr_t expected(uintptr_t address) const {
    auto it = live_.upper_bound(address);
    if (it == live_.begin()) return 0;
    --it;
    const Block& b = it->second;
    const size_t size = b.size == 0 ? 1 : b.size;
    return address < it->first + b.offset + size ? it->first : 0;
  }

  // Checks every address in [from, to) with the given stride against the oracle; stops at the
  // first few mismatches so a broken map does not print millions of lines.
  void check_range(uintptr_t from, uintptr_t to, size_t stride = 1) {
    // At most a few million lookups per call, however far apart the blocks ended up.
    const size_t kMaxLookups = size_t{4} << 20;
    if (to > from && (to - from) / stride > kMaxLookups) stride = (to - from) / kMaxLookups + 1;
    int failures = 0;
    for (uintptr_t a = from; a < to && failures < 5; a += stride) {
      const uintptr_t want = expected(a);
      const uintptr_t got = map().find_region(a);
      if (got != want && !(skip_large_first_pages_ && before_large_region_in_its_page(a, got))) {
        ++failures;
        ADD_FAILURE() << "find_region(0x" << std::hex << a << ") = 0x" << got << ", expected 0x" << want;
      }
    }
  }

  void check_around(uintptr_t region) {
    const Block& b = live_.at(region);
    check_range(region - 64, region + b.usable + 64);
  }

  // Whether `address` lies in the first page of a live large block but before its region: with
  // jemalloc's cache-oblivious offset (off in heapkeeper's configuration, LargeRegionsStartTheirPage)
  // those bytes belong to no block; the tests leave them out unless they ask for them.
  bool before_large_region_in_its_page(uintptr_t address, uintptr_t found) const {
    auto it = live_.find(found);
    return it != live_.end() && class_of(it->second.usable) < 0 && address < found &&
           (address & ~(kPageSize - 1)) == (found & ~(kPageSize - 1));
  }

  std::map<uintptr_t, Block> live_;
  std::map<uintptr_t, size_t> live_fake_;  // hand-placed blocks: region -> user size
  bool skip_large_first_pages_ = true;
};

// ---------------------------------------------------------------------------------------------
// Small blocks

TEST_F(BlockMapTest, SmallClassesMatchTheHeap) {
  ASSERT_GT(heap().small_class_count(), 10u);
  EXPECT_EQ(heap().small_max(), heap().small_class_size(heap().small_class_count() - 1));
  for (unsigned i = 0; i < heap().small_class_count(); ++i) {
    const size_t size = heap().small_class_size(i);
    EXPECT_EQ(heap().small_class_of_usable(size), static_cast<int>(i));
    EXPECT_EQ(hk_je_nallocx(size, 0), size);
    if (i > 0) {
      EXPECT_GT(size, heap().small_class_size(i - 1));
    }
  }
  EXPECT_EQ(heap().small_class_of_usable(heap().small_max() + 1), -1);
  EXPECT_EQ(heap().small_class_of_usable(17), -1);
}

TEST_F(BlockMapTest, EveryByteOfSmallBlocksOfEverySizeClass) {
  for (unsigned c = 0; c < heap().small_class_count(); ++c) {
    const size_t class_size = heap().small_class_size(c);
    if (class_size < 2 * kHeaderSize) continue;  // the engine's smallest region is header + 1 byte
    SCOPED_TRACE(testing::Message() << "class " << c << " (" << class_size << " bytes)");
    // Enough blocks to fill a few pages, so that regions straddle page boundaries; alternately
    // filling the whole region and leaving a tail that belongs to no block.
    const size_t count = 2 + 3 * kPageSize / class_size;
    std::vector<uintptr_t> regions;
    for (size_t i = 0; i < count; ++i) {
      const size_t full = class_size - kHeaderSize;
      const size_t size = i % 2 == 0 ? full : full / 2 + 1;
      const uintptr_t region = add(size, class_size);
      ASSERT_NE(region, 0u);
      EXPECT_EQ(live_[region].usable, class_size);
      regions.push_back(region);
    }
    for (uintptr_t region : regions) {
      const Block& b = live_[region];
      EXPECT_EQ(map().find_region(region), region);
      EXPECT_EQ(map().find_region(region + b.offset), region) << "user pointer";
      EXPECT_EQ(map().find_region(region + b.offset + b.size - 1), region) << "last byte";
      check_around(region);
    }
    for (uintptr_t region : regions) release(region);
  }
}

TEST_F(BlockMapTest, OnePastTheEndIsNotTheBlock) {
  // Two neighbours in the same slab: the byte after the first is the second's first byte.
  const uintptr_t first = add(48 - kHeaderSize, 48);
  const uintptr_t second = add(48 - kHeaderSize, 48);
  ASSERT_NE(first, 0u);
  ASSERT_NE(second, 0u);
  const uintptr_t low = std::min(first, second), high = std::max(first, second);
  if (high == low + 48) {
    EXPECT_EQ(map().find_region(low + 48), high) << "the next live block";
  }
  // A block with an unused tail: the byte after its size is nobody's.
  const uintptr_t tailed = add(10, 64);
  ASSERT_NE(tailed, 0u);
  EXPECT_EQ(map().find_region(tailed + kHeaderSize + 9), tailed);
  EXPECT_EQ(map().find_region(tailed + kHeaderSize + 10), 0u);
  // Once the neighbour is freed, the byte after the first is nobody's either.
  release(high);
  EXPECT_EQ(map().find_region(low + 48), 0u);
  EXPECT_EQ(map().find_region(low + 47), low);
}

// What a conservative scanner counts as a reference (find_referenced): the whole region, and one
// past the block's end, which may be the next region's start: the next block's header, which no
// program points at, so the word refers to the block before alone.
TEST_F(BlockMapTest, OnePastTheEndIsAReferenceToTheBlock) {
  const uintptr_t first = add(48 - kHeaderSize, 48);
  const uintptr_t second = add(48 - kHeaderSize, 48);
  ASSERT_NE(first, 0u);
  ASSERT_NE(second, 0u);
  const uintptr_t low = std::min(first, second), high = std::max(first, second);
  EXPECT_EQ(map().find_referenced(low + kHeaderSize), low);
  EXPECT_EQ(map().find_referenced(low + 47), low);
  if (high == low + 48) {
    EXPECT_EQ(map().find_referenced(low + 48), low) << "the next region's start, one past this block's end";
  }
  // A block with an unused tail: one past its end, in the tail, is it; a byte further is nobody's.
  const uintptr_t tailed = add(10, 64);
  ASSERT_NE(tailed, 0u);
  EXPECT_EQ(map().find_referenced(tailed + kHeaderSize + 10), tailed);
  EXPECT_EQ(map().find_referenced(tailed + kHeaderSize + 11), 0u);
  // The neighbour freed: one past the first block's end is the first block alone.
  release(high);
  EXPECT_EQ(map().find_referenced(low + 48), low);
  // A zero-byte block: its user pointer is its end, and nothing after it is.
  const uintptr_t zero = add(0, 32);
  ASSERT_NE(zero, 0u);
  EXPECT_EQ(map().find_referenced(zero + kHeaderSize), zero);
  EXPECT_EQ(map().find_referenced(zero + kHeaderSize + 1), 0u);
  // A large block whose data ends exactly at its region's end (the first byte after its pages):
  // its header is out of band, so 64 KiB of data fill a 64 KiB region. One past its end refers to
  // it unless a whole-page block in use starts there (WholePageBlockStartRefersToItAlone).
  const size_t large = 64 * kKiB;
  const uintptr_t exact = add(large);
  ASSERT_NE(exact, 0u);
  ASSERT_EQ(live_[exact].offset, 0u);
  ASSERT_EQ(live_[exact].usable, large);
  if (!map().is_live(exact + large)) {
    EXPECT_EQ(map().find_referenced(exact + large), exact);
  }
  EXPECT_EQ(map().find_referenced(exact + large - 1), exact);
}

// Whole-page blocks that fill their pages exactly lie side by side (4 KiB regions in a slab, large
// regions carved one after the other). A pointer to the start of one is that block's own pointer:
// it refers to that block alone, not also to its neighbour below as one past its end, or every
// leaked block in front of a block in use would look referenced. Once the upper block is freed,
// the same address is one past the lower block's end again.
TEST_F(BlockMapTest, WholePageBlockStartRefersToItAlone) {
  for (size_t size : {size_t{4096}, 64 * kKiB}) {
    SCOPED_TRACE(testing::Message() << size << "-byte blocks");
    std::vector<uintptr_t> regions;
    for (int i = 0; i < 16; ++i) regions.push_back(add(size));
    std::sort(regions.begin(), regions.end());
    uintptr_t lower = 0, upper = 0;
    for (size_t i = 0; i + 1 < regions.size() && lower == 0; ++i) {
      if (regions[i] + size == regions[i + 1]) lower = regions[i], upper = regions[i + 1];
    }
    ASSERT_NE(lower, 0u) << "no two blocks side by side";
    EXPECT_EQ(map().find_referenced(upper), upper) << "the upper block's own pointer";
    EXPECT_EQ(map().find_referenced(upper - 1), lower);
    release(upper);
    EXPECT_EQ(map().find_referenced(upper), lower) << "one past the end of the lower block";
    for (uintptr_t region : regions) {
      if (region != upper) release(region);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Where headers go

// The engine's placement (PrivateHeap::place_plain), size by size: a block's header goes out of
// band exactly when its region is whole pages, the region is never larger than with the header in
// band, and a request that jemalloc serves from whole pages by itself (4 KiB, 64 KiB, 1 MiB: the
// sizes programs like) takes exactly that region, not the next size class.
TEST_F(BlockMapTest, PlacementPutsHeadersOutOfBandForWholePageRegions) {
  ASSERT_TRUE(heap().out_of_band_headers());
  for (size_t size = 0; size <= heap().small_max() + 64; ++size) {
    const BlockPlacement p = heap().place_plain(size);
    const size_t region = hk_je_nallocx(p.request, 0);
    const size_t in_band_region = hk_je_nallocx(size + kHeaderSize + (size == 0 ? 1 : 0), 0);
    ASSERT_EQ(p.offset_shift == 0, region % kPageSize == 0) << size;
    ASSERT_GE(region, size + (p.offset_shift == 0 ? 0 : kHeaderSize)) << size;
    ASSERT_LE(region, in_band_region) << size;
    if (p.small_class >= 0) {
      ASSERT_EQ(heap().small_class_size(static_cast<unsigned>(p.small_class)), region) << size;
    }
    if (hk_je_nallocx(size == 0 ? 1 : size, 0) % kPageSize == 0) {
      ASSERT_EQ(region, hk_je_nallocx(size, 0)) << size;
    }
  }
  for (size_t size : {size_t{4096}, size_t{8192}, size_t{12288}, 16 * kKiB, 64 * kKiB, kMiB, 40 * kMiB}) {
    const BlockPlacement p = heap().place_plain(size);
    EXPECT_EQ(p.offset_shift, 0u) << size;
    EXPECT_EQ(p.request, size) << size;
    EXPECT_EQ(hk_je_nallocx(p.request, 0), size) << "no size class above the request";
  }
  // Aligned requests: out of band whenever the aligned region is whole pages (a page-aligned 100
  // bytes takes one page instead of two).
  EXPECT_EQ(heap().place_aligned(100, 4096).offset_shift, 0u);
  EXPECT_EQ(hk_je_nallocx(heap().place_aligned(100, 4096).request, MALLOCX_ALIGN(4096)), 4096u);
  EXPECT_EQ(heap().place_aligned(100, 64).offset_shift, 6u);
  EXPECT_EQ(heap().place_aligned(100, 2048).offset_shift, 0u) << "2048 + 100 takes a 4 KiB region anyway";
  EXPECT_EQ(heap().place_aligned(3 * kMiB, 2 * kMiB).offset_shift, 0u);
}

// An out-of-band header is not in the block: the program may write every byte of its region, and
// the header, the lookups and the end of the block stay right.
TEST_F(BlockMapTest, OutOfBandHeadersLeaveTheWholeRegionToTheProgram) {
  for (size_t size : {size_t{3580}, size_t{4096}, size_t{8000}, size_t{8192}, size_t{12288}, 16 * kKiB, kMiB}) {
    SCOPED_TRACE(testing::Message() << size << " bytes");
    const uintptr_t region = add(size);
    ASSERT_NE(region, 0u);
    const Block& b = live_[region];
    EXPECT_EQ(b.offset, 0u);
    EXPECT_EQ(region % kPageSize, 0u);
    std::memset(reinterpret_cast<void*>(region), 0xa5, b.usable);
    const BlockHeader* header = map().header(region);
    EXPECT_EQ(header, map().out_of_band_header(region));
    EXPECT_EQ(header->size(), size);
    EXPECT_TRUE(header->out_of_band());
    EXPECT_EQ(header->user_offset(), 0u);
    EXPECT_FALSE(header->freed());
    EXPECT_EQ(map().find_region(region), region) << "the user pointer is the region";
    EXPECT_EQ(map().find_region(region + size - 1), region);
    if (!map().has_out_of_band_header(region + size) || !map().is_live(region + size)) {
      EXPECT_EQ(map().find_referenced(region + size), region) << "one past the end";
    }
    check_around(region);
  }
}

// An in-band block whose region starts a page (the first region of a slab) keeps its header at its
// start: the page map says the page is a slab of a class that is not whole pages.
TEST_F(BlockMapTest, InBandBlockStartingAPage) {
  std::vector<uintptr_t> regions;
  uintptr_t on_page = 0;
  for (int i = 0; i < 400 && on_page == 0; ++i) {
    const uintptr_t region = add(48 - kHeaderSize, 48);
    ASSERT_NE(region, 0u);
    if (region % kPageSize == 0) on_page = region;
  }
  ASSERT_NE(on_page, 0u) << "no 48-byte region started a page";
  EXPECT_EQ(live_[on_page].offset, kHeaderSize);
  EXPECT_FALSE(map().has_out_of_band_header(on_page));
  EXPECT_EQ(map().header(on_page), in_band_header(on_page));
  EXPECT_EQ(map().find_region(on_page + kHeaderSize), on_page);
}

// A FILE's buffer, a vector's storage: the program keeps a pointer one past the end of a 4 KiB
// block, which fills its page exactly, and the next page starts a slab whose first region is a
// leaked block's. That address is the leaked block's header, which no program points at: the word
// refers to the buffer alone (counting it for both kept leaks alive: integration.exact_leak_count's
// slow leaker, whose stdout buffer ends there). Laid out by hand inside one large region.
TEST_F(BlockMapTest, OnePastAWholePageBlockIsNotTheNextHeader) {
  const uintptr_t arena = allocate_region(16 * kPageSize, kPageSize);
  ASSERT_NE(arena, 0u);
  const int whole = heap().small_class_of_usable(4096);
  const int small = heap().small_class_of_usable(48);
  ASSERT_GE(whole, 0);
  ASSERT_GE(small, 0);
  const uintptr_t buffer = arena + 4 * kPageSize, next = buffer + kPageSize;
  write_header(buffer, 4096, 0);
  map().record(buffer, 4096, whole);
  write_header(next, 32, kHeaderSize);
  map().record(next, 48, small);
  EXPECT_EQ(map().header(buffer), map().out_of_band_header(buffer));
  EXPECT_EQ(map().header(next), in_band_header(next));
  EXPECT_EQ(map().find_referenced(buffer + 4096), buffer) << "one past the buffer's end, not the next header";
  EXPECT_EQ(map().find_referenced(next + kHeaderSize), next) << "the next block's own pointer";
  EXPECT_EQ(map().find_referenced(buffer), buffer);
  map().retire(buffer);
  EXPECT_EQ(map().find_referenced(buffer + 4096), next)
      << "with the buffer gone, the address is only in the next region";
  map().retire(next);
  hk_je_dallocx(reinterpret_cast<void*>(arena), MALLOCX_TCACHE_NONE);
}

// ---------------------------------------------------------------------------------------------
// Large blocks

TEST_F(BlockMapTest, LargeBlocks) {
  struct Case {
    size_t size;
    size_t alignment;
    size_t stride;  // every byte for the smaller ones, a sample for the big ones
  };
  const Case cases[] = {
      {16 * kKiB, 16, 1},   {16 * kKiB - kHeaderSize, 16, 1}, {16 * kKiB + 1, 16, 1}, {100 * kKiB + 3, 16, 1},
      {kMiB, 16, 1},        {kMiB - kHeaderSize, 16, 1},      {40 * kMiB, 16, 61},    {40 * kMiB + 12345, 16, 61},
      {20 * kKiB, 4096, 1}, {3 * kMiB + 5, 2 * kMiB, 17},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << c.size << " bytes aligned to " << c.alignment);
    const uintptr_t region = add(c.size, 0, c.alignment);
    ASSERT_NE(region, 0u);
    const Block& b = live_[region];
    EXPECT_EQ(class_of(b.usable), -1);
    const uintptr_t user = region + b.offset;
    EXPECT_EQ(user % c.alignment, 0u);
    EXPECT_EQ(map().find_region(region), region);
    EXPECT_EQ(map().find_region(user), region);
    EXPECT_EQ(map().find_region(user + c.size - 1), region);
    EXPECT_EQ(map().find_region(user + c.size), expected(user + c.size));
    check_range(region - 256, region + b.usable + 256, c.stride);
    // Both sides of every page boundary.
    for (uintptr_t page = (region + kPageSize) & ~(kPageSize - 1); page < region + b.usable; page += kPageSize) {
      check_range(page - 2, page + 2);
    }
    release(region);
    EXPECT_EQ(map().find_region(user), 0u);
    EXPECT_EQ(map().find_region(user + c.size / 2), 0u);
  }
}

// Without jemalloc's cache-oblivious offset (hk_je_malloc_conf), every large region starts its first
// page, as out-of-band headers need: the user pointer is the region, and a whole number of pages of
// data fills it with no byte to spare. Addresses in front of the region, on the page before, are
// nobody's.
TEST_F(BlockMapTest, LargeRegionsStartTheirPage) {
  ASSERT_TRUE(heap().out_of_band_headers()) << "jemalloc's cache_oblivious is on";
  for (size_t size : {16 * kKiB, 20 * kKiB, 20 * kKiB + 1, 100 * kKiB, kMiB, kMiB + 1}) {
    const uintptr_t region = add(size);
    ASSERT_NE(region, 0u);
    EXPECT_EQ(region % kPageSize, 0u) << size;
    EXPECT_EQ(live_[region].offset, 0u) << size;
    EXPECT_EQ(map().find_region(region), region);
    EXPECT_EQ(map().find_region(region - 1), expected(region - 1)) << "the byte before the region";
  }
}

// Page-map entries of a large block point back at most 2^18 - 1 pages; lookups in a block bigger
// than 1 GiB follow a chain of entries. Only the header page is touched, so this costs address
// space, not memory.
TEST_F(BlockMapTest, BlockLargerThanTheDirectBackReach) {
  const size_t size = 1536 * kMiB + 7;
  const uintptr_t region = add(size);
  ASSERT_NE(region, 0u);
  const uintptr_t user = region + live_[region].offset;
  const uintptr_t first_page = region & ~(kPageSize - 1);
  for (size_t pages :
       {size_t{1}, size_t{1000}, (size_t{1} << 18) - 2, (size_t{1} << 18) - 1, size_t{1} << 18, (size_t{1} << 18) + 1,
        (size_t{2} << 18) - 1, size_t{2} << 18, (size_t{2} << 18) + 1, (size - 1) / kPageSize}) {
    const uintptr_t address = first_page + pages * kPageSize + 123;
    if (address >= user + size) continue;
    EXPECT_EQ(map().find_region(address), region) << pages << " pages in";
  }
  EXPECT_EQ(map().find_region(user + size - 1), region);
  EXPECT_EQ(map().find_region(user + size), expected(user + size));
  release(region);
  EXPECT_EQ(map().find_region(user + size - 1), 0u);
}

// ---------------------------------------------------------------------------------------------
// Life cycle of the live bit

TEST_F(BlockMapTest, RetireEndsEveryLookup) {
  for (size_t size : {size_t{24}, size_t{1000}, size_t{14000}, 64 * kKiB, 2 * kMiB}) {
    const uintptr_t region = add(size);
    ASSERT_NE(region, 0u);
    const size_t usable = live_[region].usable;
    const size_t user_offset = live_[region].offset;
    EXPECT_TRUE(map().is_live(region));
    EXPECT_TRUE(map().retire(region));
    EXPECT_FALSE(map().is_live(region));
    EXPECT_FALSE(map().retire(region)) << "a second retire finds no live block";
    for (size_t offset = 0; offset < user_offset + size; offset += 1 + offset / 8) {
      ASSERT_EQ(map().find_region(region + offset), 0u) << size << " +" << offset;
    }
    // Recording again (the same region handed out anew) makes it findable again.
    map().record(region, usable, class_of(usable));
    EXPECT_EQ(map().find_region(region + user_offset + size - 1), region);
    release(region);
  }
}

TEST_F(BlockMapTest, IsLiveOnlyAtTheStartOfALiveRegion) {
  const uintptr_t region = add(100);
  ASSERT_NE(region, 0u);
  EXPECT_TRUE(map().is_live(region));
  EXPECT_FALSE(map().is_live(region + kHeaderSize)) << "the user pointer is not the region";
  EXPECT_FALSE(map().is_live(region + 1));
  EXPECT_FALSE(map().is_live(region + 8));
  EXPECT_FALSE(map().is_live(region - 16 * 1024 * 1024 * size_t{1024}));
  EXPECT_FALSE(map().is_live(0));
  EXPECT_FALSE(map().is_live(map().heap_base() + map().heap_size()));
  EXPECT_FALSE(map().is_live(UINTPTR_MAX & ~uintptr_t{15}));
  release(region);
  EXPECT_FALSE(map().is_live(region));
}

TEST_F(BlockMapTest, AddressesOutsideTheHeapAreNotFound) {
  const uintptr_t region = add(200);
  ASSERT_NE(region, 0u);
  EXPECT_EQ(map().heap_base(), heap().tracked().base());
  EXPECT_EQ(map().heap_size(), heap().tracked().size());
  const uintptr_t base = map().heap_base(), end = base + map().heap_size();
  for (uintptr_t address : {uintptr_t{0}, uintptr_t{1}, uintptr_t{4096}, base - 1, base - 16, end, end + 1,
                            end + kPageSize, UINTPTR_MAX, UINTPTR_MAX - 15, reinterpret_cast<uintptr_t>(&region),
                            reinterpret_cast<uintptr_t>(this), reinterpret_cast<uintptr_t>(&block_map())}) {
    EXPECT_EQ(map().find_region(address), 0u) << std::hex << address;
  }
  // Inside the reservation but beyond anything handed out, and jemalloc's own metadata pages.
  EXPECT_EQ(map().find_region(end - 1), 0u);
  EXPECT_EQ(map().find_region(base + heap().tracked().used() + kPageSize), 0u);
  check_range(base, base + 64 * kKiB, 8);
}

// ---------------------------------------------------------------------------------------------
// Reuse of memory by blocks of another geometry

TEST_F(BlockMapTest, MemoryReusedByAnotherSizeClass) {
  struct Generation {
    size_t region_size;
    size_t count;
  };
  // small -> other small -> large -> small -> small -> largest small class -> large -> small.
  const Generation generations[] = {{48, 600},   {80, 500},   {kMiB, 2},       {3072, 200},
                                    {112, 1500}, {14336, 60}, {64 * kKiB, 10}, {32, 3000}};
  std::vector<std::pair<uintptr_t, uintptr_t>> earlier;  // address ranges of earlier generations
  size_t reused_bytes = 0;
  for (const Generation& g : generations) {
    SCOPED_TRACE(testing::Message() << g.count << " blocks of " << g.region_size);
    std::vector<uintptr_t> regions;
    uintptr_t low = UINTPTR_MAX, high = 0;
    for (size_t i = 0; i < g.count; ++i) {
      const size_t full = g.region_size - kHeaderSize;
      const size_t size = i % 3 == 0 ? full : full / 2 + 1;
      const uintptr_t region = add(size, g.region_size);
      ASSERT_NE(region, 0u);
      const size_t usable = live_[region].usable;
      regions.push_back(region);
      low = std::min(low, region);
      high = std::max(high, region + usable);
      for (auto [from, to] : earlier) {
        if (region < to && region + usable > from) reused_bytes += usable;
      }
    }
    for (uintptr_t region : regions) check_around(region);
    // Free every other block, then the rest: half-empty slabs, then empty ones that jemalloc hands
    // to the next generation. Every byte of the freed blocks must stop resolving.
    for (size_t i = 0; i < regions.size(); i += 2) release(regions[i]);
    for (uintptr_t region : regions) check_range(region - 16, region + g.region_size + 16, 1 + g.region_size / 4096);
    for (size_t i = 1; i < regions.size(); i += 2) release(regions[i]);
    check_range(low, high, 1 + g.region_size / 1024);
    earlier.emplace_back(low, high);
  }
  // The point of the test is that memory really was reused by other geometries.
  EXPECT_GT(reused_bytes, 0u);
}

// The page map keeps one entry per page and rewrites it only when a new block disagrees with it.
// A page that was the middle of one slab can become the first page of another slab of the same
// class, whose region grid is shifted: the entry must then be rewritten. Built by hand inside one
// large region (which is not itself recorded), placing "slabs" where jemalloc could.
TEST_F(BlockMapTest, SameClassWithAShiftedGridOnAReusedPage) {
  const uintptr_t arena = allocate_region(64 * kPageSize, kPageSize);
  ASSERT_NE(arena, 0u);
  const int cls = heap().small_class_of_usable(48);
  ASSERT_GE(cls, 0);
  auto record_fake = [&](uintptr_t region, size_t size) {
    write_header(region, size, kHeaderSize);
    map().record(region, 48, cls);
    live_fake_[region] = size;
  };
  auto find_fake = [&](uintptr_t address) -> uintptr_t {
    auto it = live_fake_.upper_bound(address);
    if (it == live_fake_.begin()) return 0;
    --it;
    return address < it->first + kHeaderSize + it->second ? it->first : 0;
  };
  auto check = [&](uintptr_t from, uintptr_t to) {
    int failures = 0;
    for (uintptr_t a = from; a < to && failures < 5; ++a) {
      if (map().find_region(a) != find_fake(a)) {
        ++failures;
        ADD_FAILURE() << "find_region(+" << (a - arena) << ") = +" << (map().find_region(a) - arena) << ", expected +"
                      << (find_fake(a) - arena);
      }
    }
  };
  // Slab A starts one page before page P: P's regions sit at P + (48 - 4096 % 48) + 48k.
  const uintptr_t slab_a = arena + 8 * kPageSize;
  const uintptr_t page_p = slab_a + kPageSize;
  for (uintptr_t r = slab_a; r + 48 <= slab_a + 3 * kPageSize; r += 48) record_fake(r, 32);
  check(page_p - 100, page_p + kPageSize + 100);
  for (auto it = live_fake_.begin(); it != live_fake_.end();) {
    map().retire(it->first);
    it = live_fake_.erase(it);
  }
  // Slab B starts at P itself: same class, grid shifted by 4096 % 48 = 16 bytes.
  for (uintptr_t r = page_p; r + 48 <= page_p + 3 * kPageSize; r += 96) record_fake(r, 20);
  check(slab_a, page_p + 3 * kPageSize);
  // A block of another class over the same page, then back to 48 on the original grid.
  for (auto it = live_fake_.begin(); it != live_fake_.end();) {
    map().retire(it->first);
    it = live_fake_.erase(it);
  }
  const int cls_640 = heap().small_class_of_usable(640);
  ASSERT_GE(cls_640, 0);
  write_header(page_p + 640, 600, kHeaderSize);
  map().record(page_p + 640, 640, cls_640);
  live_fake_[page_p + 640] = 600;
  check(page_p, page_p + kPageSize);
  map().retire(page_p + 640);
  live_fake_.clear();
  for (uintptr_t r = slab_a + 48 * 90; r < slab_a + 48 * 95; r += 48) record_fake(r, 48 - kHeaderSize);
  check(slab_a, page_p + 2 * kPageSize);
  for (auto& [region, size] : live_fake_) map().retire(region);
  live_fake_.clear();
  hk_je_dallocx(reinterpret_cast<void*>(arena), MALLOCX_TCACHE_NONE);
}

// ---------------------------------------------------------------------------------------------
// Enumeration

TEST_F(BlockMapTest, ForEachLiveVisitsExactlyTheRecordedBlocksInAddressOrder) {
  auto visited = [] {
    std::vector<uintptr_t> regions;
    block_map().for_each_live([&](uintptr_t region) { regions.push_back(region); });
    return regions;
  };
  auto recorded = [this] {
    std::vector<uintptr_t> regions;
    for (const auto& entry : live_) regions.push_back(entry.first);
    return regions;
  };
  EXPECT_EQ(visited(), recorded()) << "nothing is live before the test records blocks";
  for (size_t i = 0; i < 2000; ++i) ASSERT_NE(add(1 + (i * 37) % 3000), 0u);
  for (size_t size : {20 * kKiB, kMiB, 9 * kMiB}) ASSERT_NE(add(size), 0u);
  ASSERT_NE(add(300, 0, 4096), 0u);
  ASSERT_NE(add(5000, 0, 64 * kKiB), 0u);
  EXPECT_EQ(visited(), recorded());
  std::vector<uintptr_t> all = recorded();
  for (size_t i = 0; i < all.size(); i += 3) release(all[i]);
  EXPECT_EQ(visited(), recorded());
  while (!live_.empty()) release(live_.begin()->first);
  EXPECT_TRUE(visited().empty());
}

// ---------------------------------------------------------------------------------------------
// Zero-byte blocks

// The engine gives malloc(0) a region of header + 1 byte (engine.cpp), so the user pointer lies
// inside the block's own region and resolves to it whether or not the next region is live. (A
// header-only region would put the user pointer on the next region's first byte.)
TEST_F(BlockMapTest, ZeroSizeBlockOwnsItsUserPointer) {
  const uintptr_t zero = add(0, kHeaderSize + 1);
  ASSERT_NE(zero, 0u);
  EXPECT_EQ(map().find_region(zero), zero);
  const uintptr_t user = zero + kHeaderSize;
  EXPECT_EQ(map().find_region(user), zero) << "user pointer of a zero-byte block";
  EXPECT_EQ(map().find_region(user + 1), 0u) << "past the block's one byte";
  std::vector<uintptr_t> more;
  for (int i = 0; i < 8; ++i) more.push_back(add(0, kHeaderSize + 1));
  EXPECT_EQ(map().find_region(user), zero) << "user pointer of a zero-byte block, neighbours live";
}

TEST_F(BlockMapTest, ZeroSizeBlockInALargerRegion) {
  // The header-only region is the case above; in a 32-byte region the user pointer is inside it.
  const uintptr_t region = add(0, 32);
  ASSERT_NE(region, 0u);
  EXPECT_EQ(map().find_region(region + kHeaderSize), region);
  EXPECT_EQ(map().find_region(region + kHeaderSize + 1), 0u);
  EXPECT_EQ(map().find_region(region + 31), 0u);
}

}  // namespace
}  // namespace heapkeeper::alloc
