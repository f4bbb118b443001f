// Reporting invalid and double frees.
//
// A bad free is a bug in the program, and the most useful thing to say about it is where the block
// was allocated, where it was first freed and where it is being freed again. Block headers keep
// both stacks after a free for exactly this. After the report the policy decides: abort, as glibc
// does ("free(): double free detected"), or carry on ignoring the call
// (HEAPKEEPER_ON_BAD_FREE=continue). Everything here avoids the tracked heap; the stack printer
// that the report layer installs symbolizes through the internal arena.
#include <dlfcn.h>

#include <atomic>
#include <cstdlib>

#include "allocator/block_header.h"
#include "allocator/block_map.h"
#include "allocator/config.h"
#include "allocator/diagnostics.h"
#include "allocator/engine_internal.h"
#include "allocator/private_heap.h"
#include "allocator/quarantine.h"
#include "allocator/stack_capture.h"
#include "allocator/stack_table.h"
#include "allocator/thread_registry.h"

namespace heapkeeper::alloc {
namespace {

std::atomic<uint64_t> g_bad_frees{0};
std::atomic<StackPrinter> g_printer{nullptr};

void print_raw_stack(uint32_t stack_id, const char* title) {
  DiagnosticLine().text("  ").text(title).emit();
  StackView view = stack_table().frames(stack_id);
  if (view.depth == 0) {
    DiagnosticLine().text("    (no stack recorded)").emit();
    return;
  }
  for (uint32_t i = 0; i < view.depth; ++i) {
    DiagnosticLine line;
    line.text("    #").number(i).text(" ").hex(view.frames[i]);
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(view.frames[i] - 1), &info) != 0) {
      if (info.dli_sname != nullptr) line.text(" ").text(info.dli_sname);
      if (info.dli_fname != nullptr) {
        line.text(" (")
            .text(info.dli_fname)
            .text("+")
            .hex(view.frames[i] - reinterpret_cast<uintptr_t>(info.dli_fbase))
            .text(")");
      }
    }
    line.emit();
  }
}

void print_stack(uint32_t stack_id, const char* title) {
  StackPrinter printer = g_printer.load(std::memory_order_acquire);
  (printer != nullptr ? printer : print_raw_stack)(stack_id, title);
}

}  // namespace

void set_bad_free_stack_printer(StackPrinter printer) noexcept { g_printer.store(printer, std::memory_order_release); }
uint64_t bad_free_count() noexcept { return g_bad_frees.load(std::memory_order_relaxed); }

BadFreeKind classify_bad_free(uintptr_t ptr) noexcept {
  const AddressReservation& heap = private_heap().tracked();
  if (ptr < heap.base() + kHeaderSize || !heap.contains(reinterpret_cast<void*>(ptr)) || (ptr & 15) != 0) {
    return BadFreeKind::kInvalid;
  }
  const uintptr_t candidate = ptr - kHeaderSize;
  if (block_map().find_region(ptr) != 0) return BadFreeKind::kInvalid;  // inside a live block
  // A block collect mode freed, at any alignment the header may sit in front of it (the whole
  // reservation is readable: reading a header that was never written reads zeroes).
  for (unsigned shift = 4; shift <= kPageShift && ptr - heap.base() >= (uintptr_t{1} << shift); ++shift) {
    const BlockHeader* reclaimed = header_at(ptr - (uintptr_t{1} << shift));
    if (reclaimed->freed() && reclaimed->offset_shift() == shift && reclaimed->sequence == kFreedByCollector)
      return BadFreeKind::kReclaimed;
  }
  const BlockHeader* header = header_at(candidate);
  if (header->freed() && header->user_offset() == kHeaderSize) return BadFreeKind::kDouble;
  return BadFreeKind::kInvalid;
}

void report_bad_free(void* ptr, BadFreeKind kind, const char* api_name) noexcept {
  ThreadLocal& tl = tls_thread;
  ++tl.guard;
  if (kind == BadFreeKind::kReclaimed) {
    // The program was right and heapkeeper wrong: one line, and the call is ignored whatever the
    // bad-free policy says (the block is gone: there is nothing left to free). Not a bad free.
    const auto address = reinterpret_cast<uintptr_t>(ptr);
    for (unsigned shift = 4; shift <= kPageShift; ++shift) {
      const BlockHeader* header = header_at(address - (uintptr_t{1} << shift));
      if (header->offset_shift() != shift || header->sequence != kFreedByCollector) continue;
      report_reclaimed_call(address, header->size(), header->stack_id, api_name,
                            "after heapkeeper had freed it as unreachable: the call is ignored");
      break;
    }
    --tl.guard;
    return;
  }
  g_bad_frees.fetch_add(1, std::memory_order_relaxed);
  const uintptr_t address = reinterpret_cast<uintptr_t>(ptr);
  const uint32_t current = capture_stack(nullptr, config().stack_depth);
  DiagnosticLine line;
  switch (kind) {
    case BadFreeKind::kDouble: {
      const BlockHeader* header = header_at(address - kHeaderSize);
      line.text("double free of ")
          .hex(address)
          .text(" in ")
          .text(api_name)
          .text("(): block of ")
          .number(header->size())
          .text(" bytes, allocated by thread #")
          .number(header->thread_index());
      line.emit();
      print_stack(header->stack_id, "allocated at:");
      print_stack(header->sequence, "first freed at:");
      print_stack(current, "freed again at:");
      break;
    }
    case BadFreeKind::kInvalid: {
      line.text("invalid free of ")
          .hex(address)
          .text(" in ")
          .text(api_name)
          .text("(): not the start of a block heapkeeper allocated");
      const uintptr_t region = block_map().find_region(address);
      if (region != 0) {
        const BlockHeader* header = header_at(region);
        const int64_t offset = static_cast<int64_t>(address) - static_cast<int64_t>(region + header->user_offset());
        if (offset >= 0)
          line.text(" (it points ").number(static_cast<uint64_t>(offset)).text(" bytes into a live block of ");
        else
          line.text(" (it points ")
              .number(static_cast<uint64_t>(-offset))
              .text(" bytes before the data of a live block of ");
        line.number(header->size()).text(" bytes)");
        line.emit();
        print_stack(header->stack_id, "that block was allocated at:");
      } else {
        line.emit();
      }
      print_stack(current, "freed at:");
      break;
    }
    case BadFreeKind::kReclaimed:  // handled above
    case BadFreeKind::kForeignRealloc:
      line.text(api_name).text("() of ").hex(address).text(
          ", which heapkeeper did not allocate: its size is unknown, so it cannot be moved");
      line.emit();
      print_stack(current, "called at:");
      break;
  }
  if (config().on_bad_free == BadFreePolicy::kAbort) {
    DiagnosticLine()
        .text("aborting, as glibc would (HEAPKEEPER_ON_BAD_FREE=continue ignores bad frees instead)")
        .emit();
    std::abort();
  }
  --tl.guard;
}

}  // namespace heapkeeper::alloc
