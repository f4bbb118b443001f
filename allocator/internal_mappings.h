// The address ranges heapkeeper maps for itself (side tables, stack table, scan buffers).
//
// The collector treats every other writable anonymous mapping as a possible root; these hold
// heapkeeper's own bookkeeping — addresses, ids, hashes — which must never make a leaked block look
// reachable, so each mmap heapkeeper makes is recorded here and skipped.
#pragma once

#include <cstddef>
#include <cstdint>

namespace heapkeeper::alloc {

struct MappedRange {
  uintptr_t start, end;
};

void register_internal_mapping(const void* start, size_t length) noexcept;
void unregister_internal_mapping(const void* start) noexcept;
// Removes [start, end) from the registered ranges, trimming or splitting the range that holds it.
void forget_internal_range(uintptr_t start, uintptr_t end) noexcept;
// Copies the ranges into `out` (at most `capacity`); returns how many there are.
size_t internal_mappings(MappedRange* out, size_t capacity) noexcept;

// mmap of anonymous read-write memory, registered as internal; nullptr on failure.
void* map_internal(size_t length, bool noreserve) noexcept;
void unmap_internal(void* start, size_t length) noexcept;

}  // namespace heapkeeper::alloc
