// Implementation of return_addresses_below (see holding_frame.h).
#include "collector/holding_frame.h"

#include "allocator/own_memory.h"

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>

namespace heapkeeper::collect {
namespace {

// Reads `bytes` of this process's memory at `address`; false if any of it is not mapped.
bool read_own_memory(uint64_t address, void* out, size_t bytes) { return alloc::read_own_memory(address, out, bytes); }

// Whether the bytes just before `address` encode a call instruction that returns there.
bool follows_call(uint64_t address) {
  uint8_t b[8];
  if (address < sizeof b || !read_own_memory(address - sizeof b, b, sizeof b)) return false;
  const auto at = [&](int back) { return b[sizeof b - back]; };  // at(1): the byte before address
  if (at(5) == 0xe8) return true;                                // call rel32
  if (at(2) == 0xff && (at(1) & 0xf8) == 0xd0) return true;      // call reg (41 ff d0+r too)
  if (at(2) == 0xff && (at(1) & 0xf8) == 0x10 && (at(1) & 7) != 4 && (at(1) & 7) != 5) return true;  // call [reg]
  if (at(3) == 0xff && (at(2) & 0xf8) == 0x50 && (at(2) & 7) != 4) return true;                      // call [reg+disp8]
  if (at(4) == 0xff && at(3) == 0x54) return true;                                                   // call [sib+disp8]
  if (at(6) == 0xff && (at(5) == 0x15 || (at(5) & 0xf8) == 0x90)) return true;  // call [rip/reg+disp32]
  if (at(7) == 0xff && at(6) == 0x94) return true;                              // call [sib+disp32]
  return false;
}

}  // namespace

std::vector<uint64_t> return_addresses_below(uint64_t word, uint64_t stack_pointer, const report::ModuleMap& modules,
                                             size_t limit) {
  std::vector<uint64_t> found;
  // At most 1 MiB down: a holding frame is rarely further from the innermost one.
  const uint64_t floor = std::max(stack_pointer & ~uint64_t{7}, word > (1u << 20) ? word - (1u << 20) : 0);
  uint64_t chunk[512];
  uint64_t top = word & ~uint64_t{7};
  while (top > floor && found.size() < limit) {
    const uint64_t start = std::max(floor, top > sizeof chunk ? top - sizeof chunk : 0);
    const size_t words = (top - start) / 8;
    if (words == 0 || !read_own_memory(start, chunk, words * 8)) break;
    for (size_t i = words; i-- > 0 && found.size() < limit;) {
      const uint64_t value = chunk[i];
      if (value > 1 && modules.executable(value - 1) && follows_call(value)) found.push_back(value);
    }
    top = start;
  }
  return found;
}

}  // namespace heapkeeper::collect
