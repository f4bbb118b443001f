// Pre-faulting jemalloc's fresh metadata blocks (see metadata_prefault.h).
#include "allocator/metadata_prefault.h"

#include <sys/mman.h>

#include <cstdint>

namespace heapkeeper::alloc {
namespace {

#ifndef MADV_POPULATE_WRITE
constexpr int MADV_POPULATE_WRITE = 23;  // Linux 5.14; older glibc headers lack the name
#endif

constexpr size_t kPage = 4096;
constexpr size_t kMetadataBlockBytes = size_t{2} << 20;  // jemalloc's base blocks (HUGEPAGE)

// Measured as metadata_prefault.h says.
constexpr size_t prefault_bytes(MetadataBlock block) { return block == MetadataBlock::kBoot ? 59 * kPage : 23 * kPage; }

// This thread's announcement, if any. Per thread: two threads may make tracked arenas at once, and
// each block is mapped by the thread that asked for it.
thread_local bool t_announced = false;
thread_local MetadataBlock t_announced_kind = MetadataBlock::kBoot;

}  // namespace

PrefaultNextMetadataBlock::PrefaultNextMetadataBlock(MetadataBlock block, bool allowed) noexcept {
  t_announced_kind = block;
  t_announced = allowed;
}

PrefaultNextMetadataBlock::~PrefaultNextMetadataBlock() { t_announced = false; }

void prefault_if_announced(MetadataBlock kind, void* block, size_t length) noexcept {
  if (__builtin_expect(!t_announced, 1) || kind != t_announced_kind) return;
  // jemalloc keeps a base block only at a 2 MiB boundary: a mapping that is not (its first try,
  // about to be unmapped for a larger one it trims) is not the block.
  if (length < kMetadataBlockBytes || reinterpret_cast<uintptr_t>(block) % kMetadataBlockBytes != 0) return;
  t_announced = false;
  // Advice only: a kernel without MADV_POPULATE_WRITE (EINVAL), or short of memory, leaves the
  // pages to fault in as jemalloc writes them.
  ::madvise(block, prefault_bytes(kind), MADV_POPULATE_WRITE);
}

}  // namespace heapkeeper::alloc
