// Implementation of conservative marking and leak classification (see marker.h).
#include "collector/marker.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "allocator/block_header.h"
#include "allocator/block_map.h"
#include "allocator/internal_mappings.h"
#include "allocator/syscall_filter.h"
#include "collector/reference_graph.h"

namespace heapkeeper::collect {
namespace {

inline uintptr_t load_word(uintptr_t address) { return *reinterpret_cast<const uintptr_t*>(address); }

// The address a word may hold: the word itself, or its bits under `mask` (its low 48 bits, where
// the heap lies) when its top 16 bits are a tag the marker knows: a NaN-box's (0xfff8 to 0xffff,
// as interpreters box their objects in doubles) or bits 57-63 alone (top-byte schemes, Intel's
// LAM57). Other top bits are data, a double's exponent and mantissa: stripping them all made one
// double in 2^18 per GiB of heap a reference, and a leaked list of a GiB next to 8 MiB of doubles
// was reported as 11 MiB.
// Called only for a word whose masked bits fall in the heap, a few words a scan: the common case
// costs the mask alone.
inline bool known_tag(uintptr_t word) {
  const uintptr_t top = word >> 48;
  return top >= 0xfff8 || (top & 0x1ff) == 0;
}

// Whether the page holding `address` is mapped at all, whatever its protection: mincore fails
// (ENOMEM) only where nothing is.
bool page_mapped(uintptr_t address) {
  unsigned char resident = 0;
  return ::syscall(SYS_mincore, address & ~uintptr_t{4095}, 4096, &resident) == 0;
}

// The bytes of a block that can hold the program's pointers: its user part.
inline void user_extent(uintptr_t region, const alloc::BlockHeader* header, uintptr_t& start, uintptr_t& end) {
  start = region + header->user_offset();
  end = start + (header->size() & ~uint64_t{7});
}
inline void user_extent(uintptr_t region, uintptr_t& start, uintptr_t& end) {
  user_extent(region, alloc::block_map().header(region), start, end);
}

constexpr size_t kCopyBytes = 1 << 20;

}  // namespace

template <typename Visitor>
void Marker::for_each_snapshot_block(Visitor&& visit) const {
  for (size_t w = 0; w < words_; ++w) {
    uint64_t bits = live_[w];
    while (bits != 0) {
      const unsigned bit = static_cast<unsigned>(__builtin_ctzll(bits));
      bits &= bits - 1;
      visit(base_ + ((w * 64 + bit) << 4));
    }
  }
}

Marker::~Marker() {
  if (memory_fd_ >= 0) ::syscall(SYS_close, memory_fd_);
  for (Mapping& m : mappings_) {
    if (m.start != nullptr) alloc::unmap_internal(m.start, m.length);
  }
}

bool Marker::begin(ReferenceGraph* graph) {
  const alloc::BlockMap& map = alloc::block_map();
  base_ = map.heap_base();
  words_ = map.word_count();
  limit_ = words_ * 64 * 16;  // bytes of heap covered by the bitmap words
  address_mask_ = base_ + limit_ <= (uintptr_t{1} << 48) ? (uintptr_t{1} << 48) - 1 : ~uintptr_t{0};
  auto map_buffer = [&](int slot, size_t bytes) -> void* {
    bytes = (bytes + 4095) & ~size_t{4095};
    if (bytes == 0) bytes = 4096;
    void* p = alloc::map_internal(bytes, true);
    mappings_[slot] = {p, bytes};
    return p;
  };
  marks_ = static_cast<uint64_t*>(map_buffer(0, words_ * 8));
  seen_ = static_cast<uint64_t*>(map_buffer(1, words_ * 8));
  prefix_ = static_cast<uint32_t*>(map_buffer(2, words_ * 4 + 4));
  live_ = static_cast<uint64_t*>(map_buffer(6, words_ * 8));
  copy_buffer_ = static_cast<unsigned char*>(map_buffer(7, kCopyBytes));
  if (marks_ == nullptr || seen_ == nullptr || prefix_ == nullptr || live_ == nullptr || copy_buffer_ == nullptr)
    return false;
  // A thread in its last moments (signals blocked, not stoppable) may still free: ranks and the
  // set of blocks considered are fixed here, and blocks born later are ignored.
  uint64_t live = 0;
  for (size_t w = 0; w < words_; ++w) {
    live_[w] = map.live_word(w);
    prefix_[w] = static_cast<uint32_t>(live);
    live += static_cast<uint64_t>(__builtin_popcountll(live_[w]));
  }
  figures_.live_blocks = live;
  counts_ = static_cast<uint32_t*>(map_buffer(3, live * 4 + 4));
  worklist_capacity_ = live + 1;
  worklist_ = static_cast<uintptr_t*>(map_buffer(4, worklist_capacity_ * sizeof(uintptr_t)));
  if (counts_ == nullptr || worklist_ == nullptr) return false;
  if (graph != nullptr && live <= ReferenceGraph::kMaxBlocks && graph->begin(static_cast<uint32_t>(live))) {
    worklist_nodes_ = static_cast<uint32_t*>(map_buffer(8, worklist_capacity_ * sizeof(uint32_t)));
    if (worklist_nodes_ != nullptr) graph_ = graph;
  }
  return true;
}

size_t Marker::rank(size_t granule) const {
  const size_t word = granule >> 6;
  const uint64_t below = (uint64_t{1} << (granule & 63)) - 1;
  return prefix_[word] + static_cast<size_t>(__builtin_popcountll(live_[word] & below));
}

uint32_t Marker::reference_count(uintptr_t region) const {
  if (region - base_ >= limit_ || counts_ == nullptr) return 0;
  return counts_[rank((region - base_) >> 4)];
}

void Marker::push(uintptr_t region, size_t rank) {
  if (worklist_size_ < worklist_capacity_) {
    if (worklist_nodes_ != nullptr) worklist_nodes_[worklist_size_] = static_cast<uint32_t>(rank + 1);
    worklist_[worklist_size_++] = region;
  }
}

void Marker::scan_words(uintptr_t start, uintptr_t end, uintptr_t source_delta) {
  const ScanRange range{start, end, nullptr, 0};
  scan_ranges(&range, 1, source_delta);
}

// Resolving a word that points into the heap takes dependent reads that usually miss the cache:
// the page map and the target's header (is the address inside a live block?), then the live and
// mark bitmaps and the live blocks before the target (its rank), then its reference count. Words
// are taken in batches of up to kBatch heap-looking words, across ranges (a reachable block of
// 100 bytes holds a pointer or two), and each step's reads are started for the whole batch before
// any is used, so the misses of a batch overlap instead of following one another.
// Flattened: BlockMap::find_referenced, in another file, must be inlined into the batch loop (the
// link-time optimiser stopped doing so by itself when this file grew, and marking took a third
// longer: 101 -> 134 ms for 2 M blocks).
__attribute__((flatten)) void Marker::scan_ranges(const ScanRange* ranges, unsigned range_count,
                                                  uintptr_t source_delta) {
  const alloc::BlockMap& map = alloc::block_map();
  constexpr unsigned kBatch = 64;
  uintptr_t candidates[kBatch];
  uintptr_t positions[kBatch];  // where each candidate was read (for the graph's root words)
  uint32_t owners[kBatch];      // the range each was read from
  unsigned found = 0;
  // With a graph, each block's record must precede its references in the stream: records are
  // written in range order, each at the latest just before the block's first reference.
  unsigned recorded = 0;
  auto record_through = [&](unsigned range) {
    for (; recorded <= range; ++recorded) {
      const alloc::BlockHeader* header = ranges[recorded].header;
      graph_->open_block(ranges[recorded].node, header->size(), header->user_offset(), header->stack_id);
    }
  };
  const bool record_blocks = graph_ != nullptr && range_count > 0 && ranges[0].header != nullptr;
  auto resolve = [&] {
    // Resolved in place (the exit scan runs on the program's exiting thread, whose stack may be
    // small): candidates[i] becomes the region it points into, or 0.
    uintptr_t* const regions = candidates;
    for (unsigned i = 0; i < found; ++i) {
      regions[i] = map.find_referenced(candidates[i]);
      if (regions[i] == 0) continue;
      const size_t word = ((regions[i] - base_) >> 4) >> 6;
      __builtin_prefetch(&live_[word]);
      __builtin_prefetch(&prefix_[word]);
      __builtin_prefetch(&marks_[word]);
    }
    uint32_t ranks[kBatch];  // ranks fit: prefix_ counts blocks in 32 bits
    unsigned resolved = 0;
    for (unsigned i = 0; i < found; ++i) {
      if (regions[i] == 0) continue;
      const size_t granule = (regions[i] - base_) >> 4;
      if (!was_live(granule)) continue;  // born after the scan began
      const auto block_rank = static_cast<uint32_t>(rank(granule));
      __builtin_prefetch(&counts_[block_rank], 1);
      if (graph_ != nullptr) {
        const auto node = static_cast<uint32_t>(block_rank + 1);
        if (scanning_roots_) {
          graph_->add_root_edge(node, positions[i] + source_delta);
        } else {
          if (record_blocks) record_through(owners[i]);
          graph_->add_edge(node);
        }
      }
      regions[resolved] = regions[i];
      ranks[resolved++] = block_rank;
    }
    for (unsigned i = 0; i < resolved; ++i) {
      uint32_t& count = counts_[ranks[i]];
      if (count != UINT32_MAX) ++count;
      const size_t granule = (regions[i] - base_) >> 4;
      if (!is_marked(granule)) {
        set_mark(granule);
        push(regions[i], ranks[i]);
      }
    }
    found = 0;
  };
  const uintptr_t mask = address_mask_, base = base_, limit = limit_;
  for (unsigned r = 0; r < range_count; ++r) {
    const uintptr_t end = ranges[r].end;
    for (uintptr_t p = (ranges[r].start + 7) & ~uintptr_t{7}; p + 8 <= end; p += 8) {
      const uintptr_t word = load_word(p), value = word & mask;
      if (value - base >= limit) continue;  // the common case: not a heap address
      if (value != word && !known_tag(word)) continue;
      map.prefetch_lookup(value);
      positions[found] = p;
      owners[found] = r;
      candidates[found++] = value;
      if (found == kBatch) resolve();
    }
  }
  if (found > 0) resolve();
  if (record_blocks) record_through(range_count - 1);
}

// Roots are read through process_vm_readv on our own pid: a mapping that a not-yet-stopped thread
// (one tearing itself down with signals blocked) unmaps during the scan then reads as an error,
// and is skipped, instead of faulting the scanner. The heap itself never goes away. By our thread
// id, not the pid: after the main thread's pthread_exit the pid names a zombie with no memory, and
// every read would fail.
void Marker::scan_root_copy(uintptr_t start, uintptr_t end) {
  // A seccomp filter may kill the process for process_vm_readv, the first debugging call it sees.
  if (!direct_root_reads_ && alloc::syscall_filter_installed()) direct_root_reads_ = true;
  if (direct_root_reads_) {
    scan_words(start, end);
    return;
  }
  const pid_t self = gettid();
  for (uintptr_t chunk = start; chunk < end;) {
    const size_t length = end - chunk < kCopyBytes ? end - chunk : kCopyBytes;
    iovec local{copy_buffer_, length};
    iovec remote{reinterpret_cast<void*>(chunk), length};
    const ssize_t copied = process_vm_readv(self, &local, 1, &remote, 1, 0);
    if (copied < 0 && (errno == ENOSYS || errno == EPERM)) {
      direct_root_reads_ = true;  // not allowed here (seccomp): fall back to reading in place
      scan_words(chunk, end);
      return;
    }
    if (copied <= 0) {
      // A page process_vm_readv cannot read: gone (a thread tearing itself down unmapped it), or
      // one the program made PROT_NONE or write-only inside a root, a write-only mapping or a
      // page of its own data segment (whose blocks were freed under it when that page was
      // skipped): the rest of the chunk is read as a debugger reads (for_each_copied_piece).
      if (!page_mapped(chunk)) {
        chunk = (chunk + 4096) & ~uintptr_t{4095};  // skip the page that is gone
        continue;
      }
      for_each_copied_piece(chunk, chunk + length, false,
                            [&](uintptr_t from, uintptr_t to, uintptr_t delta) { scan_words(from, to, delta); });
      chunk += length;
      continue;
    }
    const auto buffer = reinterpret_cast<uintptr_t>(copy_buffer_);
    scan_words(buffer, buffer + static_cast<size_t>(copied), chunk - buffer);
    chunk += static_cast<uintptr_t>(copied);
  }
}

bool Marker::scan_fallible_root_range(uintptr_t start, uintptr_t end) {
  if (!direct_root_reads_ && alloc::syscall_filter_installed()) direct_root_reads_ = true;
  start = (start + 7) & ~uintptr_t{7};
  if (direct_root_reads_) return false;
  if (end <= start) return true;
  figures_.root_bytes += end - start;
  const pid_t self = gettid();
  for (uintptr_t chunk = start; chunk < end;) {
    const size_t length = end - chunk < kCopyBytes ? end - chunk : kCopyBytes;
    iovec local{copy_buffer_, length};
    iovec remote{reinterpret_cast<void*>(chunk), length};
    const ssize_t copied = process_vm_readv(self, &local, 1, &remote, 1, 0);
    if (copied < 0 && (errno == ENOSYS || errno == EPERM)) {
      direct_root_reads_ = true;
      return false;
    }
    if (copied <= 0) {
      chunk = (chunk + 4096) & ~uintptr_t{4095};
      continue;
    }
    const auto buffer = reinterpret_cast<uintptr_t>(copy_buffer_);
    scan_words(buffer, buffer + static_cast<size_t>(copied), chunk - buffer);
    chunk += static_cast<uintptr_t>(copied);
  }
  return true;
}

void Marker::scan_unaligned_root_range(uintptr_t start, uintptr_t end, bool fallible) {
  if (!direct_root_reads_ && alloc::syscall_filter_installed()) direct_root_reads_ = true;
  if (direct_root_reads_ && fallible) return;
  if (end <= start + 10) return;
  const pid_t self = gettid();
  // x86-64 has one instruction with a 64-bit immediate, movabs (REX.W, then B8+r): each one's
  // operand, where it is no multiple of 8 (those were read as words). One pass over the bytes:
  // reading every offset as a word cost 7 times a data mapping's scan where a region was
  // executable and mostly data (an adversarial round's 1 GiB: 1.2 s a scan, from 0.18).
  for (uintptr_t chunk = start; chunk + 10 <= end;) {
    const size_t length = std::min<uintptr_t>(end - chunk, kCopyBytes);
    ssize_t copied = 0;
    if (direct_root_reads_) {
      std::memcpy(copy_buffer_, reinterpret_cast<const void*>(chunk), length);
      copied = static_cast<ssize_t>(length);
    } else {
      iovec local{copy_buffer_, length};
      iovec remote{reinterpret_cast<void*>(chunk), length};
      copied = process_vm_readv(self, &local, 1, &remote, 1, 0);
      if (copied < 0 && (errno == ENOSYS || errno == EPERM)) {
        direct_root_reads_ = true;
        if (fallible) return;
        continue;  // this chunk again, in place
      }
    }
    if (copied <= 0) {  // a page that cannot be read: skipped (see scan_fallible_root_range)
      chunk = (chunk + 4096) & ~uintptr_t{4095};
      continue;
    }
    const auto bytes = static_cast<size_t>(copied);
    for (size_t i = 1; i + 9 <= bytes; ++i) {  // i: an opcode's byte, its prefix before it
      // Eight bytes at a time while none of them can be an opcode B8+r (0xb8 to 0xbf): a zero
      // byte of (word ^ 0xb8...) & 0xf8... is one that can.
      if (i % 8 == 0 && i + 8 <= bytes) {
        uint64_t eight;
        std::memcpy(&eight, copy_buffer_ + i, sizeof eight);
        const uint64_t masked = (eight ^ 0xb8b8b8b8b8b8b8b8ULL) & 0xf8f8f8f8f8f8f8f8ULL;
        if (((masked - 0x0101010101010101ULL) & ~masked & 0x8080808080808080ULL) == 0) {
          i += 7;
          continue;
        }
      }
      if ((copy_buffer_[i] & 0xf8) != 0xb8 || (copy_buffer_[i - 1] & 0xf8) != 0x48) continue;
      const uintptr_t operand = chunk + i + 1;
      if (operand % 8 == 0) continue;
      // The operand copied to an aligned word of its own, read as a root word at its address.
      alignas(8) uintptr_t word;
      std::memcpy(&word, copy_buffer_ + i + 1, sizeof word);
      const auto at = reinterpret_cast<uintptr_t>(&word);
      scan_words(at, at + sizeof word, operand - at);
    }
    // An instruction across the end of a piece is read again with the next.
    chunk += bytes > 10 ? bytes - 9 : bytes;
  }
}

void Marker::scan_root_range(uintptr_t start, uintptr_t end) {
  start = (start + 7) & ~uintptr_t{7};
  if (end <= start) return;
  figures_.root_bytes += end - start;
  if (direct_root_reads_)
    scan_words(start, end);
  else
    scan_root_copy(start, end);
}

bool Marker::meets_unreadable(uintptr_t start, uintptr_t end) const {
  size_t low = 0, high = unreadable_count_;  // the first range ending after `start`
  while (low < high) {
    const size_t middle = (low + high) / 2;
    if (unreadable_[middle].end <= start)
      low = middle + 1;
    else
      high = middle;
  }
  return low < unreadable_count_ && unreadable_[low].start < (end > start ? end : start + 1);
}

// Through /proc/thread-self/mem, as a debugger reads: the kernel reads pages the program made
// PROT_NONE (it may read what the process could make readable). By our thread, not the pid: the
// main thread may have exited (see scan_root_copy). Raw system calls: heapkeeper wraps libc's
// blocking calls. Not under a seccomp filter, which may kill the process for a call it did not
// expect: the scan is then dropped (unreadable_failed_). A page of a root that reads nowhere holds
// nothing (a guard region made with MADV_GUARD_INSTALL, which glibc may put in thread stacks).
template <typename Visitor>
void Marker::for_each_copied_piece(uintptr_t start, uintptr_t end, bool unread_voids, Visitor&& visit) {
  if (memory_fd_ < 0 && !unreadable_failed_) {
    if (!alloc::syscall_filter_installed())
      memory_fd_ = static_cast<int>(::syscall(SYS_openat, AT_FDCWD, "/proc/thread-self/mem", O_RDONLY | O_CLOEXEC));
    if (memory_fd_ < 0) unreadable_failed_ = true;
  }
  const auto buffer = reinterpret_cast<uintptr_t>(copy_buffer_);
  for (uintptr_t chunk = start; chunk < end;) {
    const size_t length = end - chunk < kCopyBytes ? end - chunk : kCopyBytes;
    const long copied = memory_fd_ >= 0 ? ::syscall(SYS_pread64, memory_fd_, copy_buffer_, length, chunk) : -1;
    if (copied <= 0) {
      if (unread_voids) unreadable_failed_ = true;
      chunk = (chunk + 4096) & ~uintptr_t{4095};
      continue;
    }
    visit(buffer, buffer + static_cast<uintptr_t>(copied), chunk - buffer);
    chunk += static_cast<uintptr_t>(copied);
  }
}

// Blocks go from the worklist (a stack) through a small FIFO before they are scanned, their first
// lines fetched as they enter it (Cher, Hosking and Vijaykumar, "Software prefetching for
// mark-sweep garbage collection", 2004): prefetched when pushed, a block came too late, since the
// block just pushed is the next one popped. Blocks leave the FIFO a few at a time, scanned as one
// batch (scan_ranges).
void Marker::propagate() {
  scanning_roots_ = false;
  constexpr unsigned kAhead = 32;  // a power of two
  constexpr unsigned kGroup = 8;
  struct Pending {
    uintptr_t region;
    uint32_t node;
  };
  Pending fifo[kAhead];
  unsigned head = 0, queued = 0;
  const alloc::BlockMap& map = alloc::block_map();
  for (;;) {
    while (queued < kAhead && worklist_size_ > 0) {
      --worklist_size_;
      const uintptr_t region = worklist_[worklist_size_];
      fifo[(head + queued++) % kAhead] = {region, graph_ != nullptr ? worklist_nodes_[worklist_size_] : 0};
      // The header (in band: the region's first line) and the first user bytes after it.
      __builtin_prefetch(reinterpret_cast<const void*>(region));
      __builtin_prefetch(reinterpret_cast<const void*>(region + 64));
    }
    if (queued == 0) break;
    ScanRange group[kGroup];
    unsigned grouped = 0;
    for (; grouped < kGroup && queued > 0; --queued) {
      const Pending next = fifo[head];
      head = (head + 1) % kAhead;
      const alloc::BlockHeader* header = map.header(next.region);
      uintptr_t start, end;
      user_extent(next.region, header, start, end);
      ++figures_.reachable_blocks;
      figures_.heap_bytes += end - start;
      if (__builtin_expect(unreadable_count_ != 0, 0) && meets_unreadable(start, end)) {
        // Scanned alone, from a copy, after the blocks before it (the graph records blocks in
        // the order they are scanned); its first piece carries its record.
        scan_ranges(group, grouped, 0);
        grouped = 0;
        const alloc::BlockHeader* record = header;
        for_each_copied_piece(start, end, true, [&](uintptr_t from, uintptr_t to, uintptr_t delta) {
          const ScanRange piece{from, to, record, next.node};
          record = nullptr;
          scan_ranges(&piece, 1, delta);
        });
        if (record != nullptr) {  // nothing could be read: the block is still recorded
          const ScanRange empty{start, start, record, next.node};
          scan_ranges(&empty, 1, 0);
        }
        continue;
      }
      group[grouped++] = {start, end, header, next.node};
    }
    scan_ranges(group, grouped, 0);
  }
  if (graph_ != nullptr) graph_->end_recording();
}

// Leak phase: `count_only` counts references between leaked blocks; otherwise it floods the
// blocks reachable from `region` through the worklist, marking them seen (indirect).
// In the leak phase, a leaked block's count of references from other leaked blocks saturates below
// the top bit, which marks the blocks no direct leak reaches (cycle leaks) until they are listed.
constexpr uint32_t kCycleBit = uint32_t{1} << 31;
constexpr uint32_t kMaxLeakReferences = kCycleBit - 1;

void Marker::scan_block_for_leaks(uintptr_t region, bool count_only) {
  const alloc::BlockMap& map = alloc::block_map();
  uintptr_t start, end;
  user_extent(region, start, end);
  auto visit = [&](uintptr_t target) {
    if (target == 0 || target == region) return;
    const size_t granule = (target - base_) >> 4;
    if (!was_live(granule) || is_marked(granule)) return;  // reachable: not part of the leak graph
    if (count_only) {
      uint32_t& count = counts_[rank(granule)];
      if (count < kMaxLeakReferences) ++count;
    } else if (!((seen_[granule >> 6] >> (granule & 63)) & 1)) {
      seen_[granule >> 6] |= uint64_t{1} << (granule & 63);
      push(target);
    }
  };
  auto scan = [&](uintptr_t from, uintptr_t to) {
    for (uintptr_t p = from; p + 8 <= to; p += 8) {
      const uintptr_t word = load_word(p), value = word & address_mask_;
      if (value - base_ >= limit_ || (value != word && !known_tag(word))) continue;
      visit(map.find_referenced(value));  // the same references as marking counts
    }
  };
  if (__builtin_expect(unreadable_count_ != 0, 0) && meets_unreadable(start, end))
    for_each_copied_piece(start, end, true, [&](uintptr_t from, uintptr_t to, uintptr_t) { scan(from, to); });
  else
    scan(start, end);
}

// One pass over the reached blocks, a bitmap word at a time, ranks counted as it goes: a 10 M
// block heap makes it part of every pause.
ReferenceSummary Marker::summarise_references() const {
  ReferenceSummary summary;
  constexpr int kLast = ReferenceSummary::kTop - 1;
  for (size_t w = 0; w < words_; ++w) {
    const uint64_t live = live_[w];
    uint64_t reached = live & marks_[w];
    while (reached != 0) {
      const unsigned bit = static_cast<unsigned>(__builtin_ctzll(reached));
      reached &= reached - 1;
      const uint32_t refs =
          counts_[prefix_[w] + static_cast<size_t>(__builtin_popcountll(live & ((uint64_t{1} << bit) - 1)))];
      const int bucket = refs <= 1 ? 0 : refs == 2 ? 1 : refs <= 4 ? 2 : refs <= 8 ? 3 : refs <= 16 ? 4 : 5;
      ++summary.histogram[bucket];
      // Keep the kTop largest counts, the first in address order among equals (insertion into a
      // tiny sorted array, which most blocks do not enter).
      if (refs <= summary.most_referenced[kLast].references) continue;
      int at = kLast;
      while (at > 0 && refs > summary.most_referenced[at - 1].references) {
        summary.most_referenced[at] = summary.most_referenced[at - 1];
        --at;
      }
      summary.most_referenced[at] = {base_ + ((w * 64 + bit) << 4), refs, 0, 0};
    }
  }
  for (ReferenceSummary::Top& top : summary.most_referenced) {
    if (top.references == 0) break;
    const alloc::BlockHeader* header = alloc::block_map().header(top.region);
    top.size = header->size();
    top.stack_id = header->stack_id;
  }
  return summary;
}

// The live blocks marking did not reach, with their ranks: a word of the live bitmap at a time
// (leaks are few; a pass over every live block's bit cost 10 M steps on a 10 M block heap).
template <typename Visitor>
void Marker::for_each_unmarked_block(Visitor&& visit) const {
  for (size_t w = 0; w < words_; ++w) {
    uint64_t bits = live_[w] & ~marks_[w];
    while (bits != 0) {
      const unsigned bit = static_cast<unsigned>(__builtin_ctzll(bits));
      bits &= bits - 1;
      const uint64_t below = (uint64_t{1} << bit) - 1;
      visit(base_ + ((w * 64 + bit) << 4), prefix_[w] + static_cast<size_t>(__builtin_popcountll(live_[w] & below)));
    }
  }
}

const LeakedBlock* Marker::classify_leaks(size_t& count) {
  const uint64_t unreachable = figures_.live_blocks - figures_.reachable_blocks;
  leaks_ = static_cast<LeakedBlock*>(
      alloc::map_internal(((unreachable + 1) * sizeof(LeakedBlock) + 4095) & ~size_t{4095}, true));
  mappings_[5] = {leaks_, ((unreachable + 1) * sizeof(LeakedBlock) + 4095) & ~size_t{4095}};
  count = 0;
  if (leaks_ == nullptr || unreachable == 0) return leaks_;

  // 1. References between leaked blocks (reachable blocks cannot point to them).
  for_each_unmarked_block([&](uintptr_t region, size_t) { scan_block_for_leaks(region, true); });
  // 2. Blocks no leaked block points to are direct; flood what they reach as indirect.
  // 3. What remains unseen is reached from no direct leak: cycles and what only they reach. Each
  //    is marked a cycle leak; flooding from one block of each cycle sees them all.
  auto flood_from = [&](uintptr_t region) {
    const size_t granule = (region - base_) >> 4;
    seen_[granule >> 6] |= uint64_t{1} << (granule & 63);
    push(region);
    while (worklist_size_ > 0) scan_block_for_leaks(worklist_[--worklist_size_], false);
  };
  auto is_seen = [&](size_t granule) { return (seen_[granule >> 6] >> (granule & 63)) & 1; };
  for_each_unmarked_block([&](uintptr_t region, size_t block_rank) {
    const size_t granule = (region - base_) >> 4;
    if (counts_[block_rank] != 0) return;
    if (!is_seen(granule)) {
      flood_from(region);
      leaks_[count++] = {region, 0, 0, 0, 0, report::LeakKind::kDirect};  // listed, to clear below
    }
  });
  bool cycles = false;
  for_each_unmarked_block([&](uintptr_t region, size_t block_rank) {
    if (is_seen((region - base_) >> 4)) return;
    counts_[block_rank] |= kCycleBit;
    cycles = true;
  });
  if (cycles) {
    for_each_unmarked_block([&](uintptr_t region, size_t) {
      if (!is_seen((region - base_) >> 4)) flood_from(region);
    });
  }
  // Rebuild the list in address order with details. The direct leaks' "seen" bits are cleared
  // first, so seen now means indirect, the cycle bit cycle, and neither direct.
  const size_t directs = count;
  for (size_t i = 0; i < directs; ++i) {
    const size_t granule = (leaks_[i].region - base_) >> 4;
    seen_[granule >> 6] &= ~(uint64_t{1} << (granule & 63));
  }
  count = 0;
  for_each_unmarked_block([&](uintptr_t region, size_t block_rank) {
    const size_t granule = (region - base_) >> 4;
    const alloc::BlockHeader* header = alloc::block_map().header(region);
    LeakedBlock& leak = leaks_[count++];
    leak.region = region;
    leak.size = header->size();
    leak.stack_id = header->stack_id;
    leak.sequence = header->sequence;
    uint32_t& references = counts_[block_rank];
    const bool cycle = (references & kCycleBit) != 0;
    references &= ~kCycleBit;
    leak.references_from_leaks = references;
    leak.kind = cycle              ? report::LeakKind::kCycle
                : is_seen(granule) ? report::LeakKind::kIndirect
                                   : report::LeakKind::kDirect;
    figures_.leaked_bytes += leak.size;
    if (leak.kind == report::LeakKind::kDirect)
      ++figures_.direct_blocks;
    else if (leak.kind == report::LeakKind::kCycle)
      ++figures_.cycle_blocks;
    else
      ++figures_.indirect_blocks;
  });
  figures_.leaked_blocks = count;
  return leaks_;
}

}  // namespace heapkeeper::collect
