// Implementation of the signal-safe pool (see signal_safe_pool.h).
#include "allocator/signal_safe_pool.h"

#include <cerrno>
#include <cstring>

#include <sys/mman.h>

namespace heapkeeper::alloc {
namespace {

SignalSafePool g_pool;

// The state word in front of a block: a constant that a pointer the pool never handed out is
// unlikely to have in front of it, the class (kUnpooled: never reused), and whether it is live.
constexpr uint64_t kStateMagic = uint64_t{0x5afe9001} << 32;
constexpr uint64_t kMagicMask = ~uint64_t{0} << 32;
constexpr uint64_t kLiveBit = uint64_t{1} << 8;
// Bits 9..31: how far an aligned block's user pointer lies past its class block's payload, in
// 16-byte units (below 64 MiB, the largest class).
constexpr unsigned kOffsetShift = 9;
constexpr uint64_t kUnpooled = 0xff;
constexpr size_t kHeaderBytes = 16;  // state word, then the requested size

std::atomic<uint64_t>& state_of(uintptr_t user) { return *reinterpret_cast<std::atomic<uint64_t>*>(user - 16); }
void set_size(uintptr_t user, size_t size) { std::memcpy(reinterpret_cast<void*>(user - 8), &size, sizeof size); }

// The class of blocks of `size` bytes (an aligned request's size plus its room to align); kUnpooled
// if too large.
unsigned class_of(size_t size) {
  if (size > (size_t{1} << SignalSafePool::kLargestClassShift)) return kUnpooled;
  if (size <= (size_t{1} << SignalSafePool::kSmallestClassShift)) return 0;
  return static_cast<unsigned>(64 - __builtin_clzll(size - 1)) - SignalSafePool::kSmallestClassShift;
}
size_t class_bytes(unsigned index) { return size_t{1} << (index + SignalSafePool::kSmallestClassShift); }

// Where a freed class block keeps its successor: the word in front of its payload (an unaligned
// block's size word), so that an aligned block's two words, which lie inside the payload (at the
// payload itself when the block is 16 bytes in), stay where they are, marked freed. Read while
// another thread may be writing it: an atomic access, whose value a failed compare-and-swap
// discards. The low half holds the successor as a list head does; the high half how far in, in
// 16-byte units, the freed block's user pointer was (0: at the payload), for pop to clear the two
// words a block handed out again must not keep.
std::atomic<uint64_t>& link_of(uintptr_t payload) { return *reinterpret_cast<std::atomic<uint64_t>*>(payload - 8); }

}  // namespace

SignalSafePool& signal_safe_pool() { return g_pool; }

bool SignalSafePool::initialize() { return range_.reserve(size_t{256} << 20, size_t{16} << 20); }

void* SignalSafePool::allocate(size_t size, size_t alignment, bool) noexcept {
  if (alignment < 16) alignment = 16;
  if (size > range_.size() || alignment > range_.size()) {
    errno = ENOMEM;
    return nullptr;
  }
  // An aligned block takes a class block with room to align inside it: its user pointer lies at
  // most alignment - 16 bytes past the class block's payload, its two words in front of it. A
  // block larger than the largest class is made the same way, to its own size, and never reused.
  const size_t room = size + (alignment - 16);
  const unsigned index = class_of(room);
  uintptr_t payload = index != kUnpooled ? pop(index) : 0;
  if (payload == 0) {
    // Fresh memory from the range, already zero: the block's two words, then its payload.
    auto* raw =
        static_cast<unsigned char*>(range_.take(kHeaderBytes + (index != kUnpooled ? class_bytes(index) : room), 16));
    if (raw == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
    payload = reinterpret_cast<uintptr_t>(raw) + kHeaderBytes;
  }
  const uintptr_t user = (payload + alignment - 1) & ~(uintptr_t{alignment} - 1);
  // A class block used unaligned before keeps that use's freed state word in front of its payload:
  // a free of the payload's address, now inside this block, is an invalid one, not a double free.
  if (user != payload) state_of(payload).store(0, std::memory_order_relaxed);
  set_size(user, size);
  state_of(user).store(kStateMagic | ((user - payload) / 16) << kOffsetShift | kLiveBit | index,
                       std::memory_order_release);
  return reinterpret_cast<void*>(user);
}

uintptr_t SignalSafePool::pop(unsigned index) noexcept {
  std::atomic<uint64_t>& list = free_lists_[index];
  uint64_t head = list.load(std::memory_order_acquire);
  while (static_cast<uint32_t>(head) != 0) {
    const uintptr_t payload = range_.base() + (static_cast<uint32_t>(head) - 1) * uintptr_t{16};
    const uint64_t next = link_of(payload).load(std::memory_order_relaxed);
    const uint64_t popped = ((head >> 32) + 1) << 32 | static_cast<uint32_t>(next);
    if (list.compare_exchange_weak(head, popped, std::memory_order_acquire, std::memory_order_acquire)) {
      // Ours now. free zeroed the payload but an aligned block's two words: they go now.
      const auto units = static_cast<uintptr_t>(link_of(payload).load(std::memory_order_relaxed) >> 32);
      link_of(payload).store(0, std::memory_order_relaxed);
      if (units != 0) std::memset(reinterpret_cast<void*>(payload + units * 16 - kHeaderBytes), 0, kHeaderBytes);
      return payload;
    }
  }
  return 0;
}

SignalSafePool::FreeResult SignalSafePool::free(void* ptr) noexcept {
  const auto user = reinterpret_cast<uintptr_t>(ptr);
  if ((user & 15) != 0 || user < range_.base() + kHeaderBytes || user >= range_.base() + range_.used())
    return FreeResult::kInvalid;
  std::atomic<uint64_t>& state = state_of(user);
  uint64_t seen = state.load(std::memory_order_acquire);
  if ((seen & kMagicMask) != kStateMagic) return FreeResult::kInvalid;
  const unsigned index = static_cast<unsigned>(seen & 0xff);
  const uintptr_t offset = ((seen & ~kMagicMask) >> kOffsetShift) * 16;
  if (index != kUnpooled &&
      (index >= kClasses || offset >= class_bytes(index) || offset > user - range_.base() - kHeaderBytes))
    return FreeResult::kInvalid;
  // Only one of two frees of a block may take it: the other is a double free.
  if ((seen & kLiveBit) == 0 || !state.compare_exchange_strong(seen, seen & ~kLiveBit, std::memory_order_acq_rel))
    return FreeResult::kDoubleFree;
  if (index == kUnpooled) {
    // Kept, but emptied: its stale pointers must not hold other blocks.
    std::memset(ptr, 0, size_of(ptr));
    return FreeResult::kFreed;
  }
  // Emptied, and back on its class's list. An aligned block's two words lie inside the payload:
  // its state word stays, marked freed, so that a second free of it is told as one.
  const uintptr_t payload = user - offset;
  if (offset == 0) {
    zero(payload, class_bytes(index));
  } else {
    zero(payload, offset - kHeaderBytes);
    set_size(user, 0);
    zero(user, class_bytes(index) - offset);
  }
  push(index, payload, offset / 16);
  return FreeResult::kFreed;
}

void SignalSafePool::push(unsigned index, uintptr_t payload, uintptr_t offset_units) noexcept {
  std::atomic<uint64_t>& list = free_lists_[index];
  const uint64_t position = (payload - range_.base()) / 16 + 1;
  uint64_t head = list.load(std::memory_order_relaxed);
  do {
    link_of(payload).store(uint64_t{offset_units} << 32 | static_cast<uint32_t>(head), std::memory_order_relaxed);
  } while (!list.compare_exchange_weak(head, ((head >> 32) + 1) << 32 | position, std::memory_order_release,
                                       std::memory_order_relaxed));
}

// Zeroes [start, start + bytes): from 1 MiB up, whole pages by giving them back to the kernel (they
// read as zeros and cost no memory until touched again), the edges by hand; smaller blocks by hand,
// as their pages would cost more to fault in again than to clear (a handler reusing a 64 KiB block
// under a 100 us timer took longer than the period with them given back, and the program stopped
// making progress).
void SignalSafePool::zero(uintptr_t start, size_t bytes) noexcept {
  constexpr uintptr_t kPage = 4096;
  const uintptr_t end = start + bytes;
  const uintptr_t first_page = (start + kPage - 1) & ~(kPage - 1), last_page = end & ~(kPage - 1);
  if (bytes < (size_t{1} << 20) || last_page <= first_page ||
      ::madvise(reinterpret_cast<void*>(first_page), last_page - first_page, MADV_DONTNEED) != 0) {
    std::memset(reinterpret_cast<void*>(start), 0, bytes);
    return;
  }
  std::memset(reinterpret_cast<void*>(start), 0, first_page - start);
  std::memset(reinterpret_cast<void*>(last_page), 0, end - last_page);
}

size_t SignalSafePool::size_of(const void* ptr) const noexcept {
  size_t size;
  std::memcpy(&size, static_cast<const unsigned char*>(ptr) - sizeof(size_t), sizeof(size_t));
  return size;
}

}  // namespace heapkeeper::alloc
