// Reporting invalid and double frees.
//
// A bad free is a bug in the program, and the most useful thing to say about it is where the block
// was allocated, where it was first freed and where it is being freed again. Block headers keep
// both stacks after a free for exactly this. After the report the policy decides: abort, as glibc
// does ("free(): double free detected"), or carry on ignoring the call
// (HEAPKEEPER_ON_BAD_FREE=continue). Headers out of band (whole-page blocks) keep both stacks as
// in-band ones do. Everything here avoids the tracked heap; the stack printer
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

namespace {

// The header a freed block whose user pointer was `ptr` left behind, or null: out of band when
// `ptr` starts a page whose latest occupant was a whole-page block (the page map still says so),
// else in band, 16 bytes in front (or the alignment, for an aligned block: `shift` from 4 up to
// the page). The whole reservation is readable: a header that was never written reads as zeroes.
const BlockHeader* freed_header(uintptr_t ptr, unsigned shift) {
  const AddressReservation& heap = private_heap().tracked();
  if (!heap.contains(reinterpret_cast<void*>(ptr)) || (ptr & 15) != 0) return nullptr;
  if (shift == BlockHeader::kOutOfBandShift) {
    if (!block_map().has_out_of_band_header(ptr)) return nullptr;
    const BlockHeader* header = block_map().out_of_band_header(ptr);
    return header->freed() && header->out_of_band() ? header : nullptr;
  }
  if (ptr - heap.base() < (uintptr_t{1} << shift)) return nullptr;
  const uintptr_t region = ptr - (uintptr_t{1} << shift);
  if (block_map().has_out_of_band_header(region)) return nullptr;  // the program's bytes, not a header
  const BlockHeader* header = in_band_header(region);
  return header->freed() && header->offset_shift() == shift ? header : nullptr;
}

// A block collect mode freed whose user pointer was `ptr`, at any placement of its header.
const BlockHeader* reclaimed_header(uintptr_t ptr) {
  for (unsigned shift = 0; shift <= kPageShift; shift = shift == 0 ? 4 : shift + 1) {
    const BlockHeader* header = freed_header(ptr, shift);
    if (header != nullptr && header->sequence == kFreedByCollector) return header;
  }
  return nullptr;
}

// The block the program freed whose user pointer was `ptr`, at any placement of its header: out of
// band, 16 bytes in front, or an aligned block's alignment in front (aligned_alloc(64, ...)'s header
// is 64 bytes before the pointer). A header counts only where it says its user pointer lies exactly
// there (freed_header), and a pointer into a live block was ruled out before.
const BlockHeader* double_freed_header(uintptr_t ptr) {
  for (unsigned shift = 0; shift <= kPageShift; shift = shift == 0 ? 4 : shift + 1) {
    if (const BlockHeader* header = freed_header(ptr, shift)) return header;
  }
  return nullptr;
}

}  // namespace

BadFreeKind classify_bad_free(uintptr_t ptr) noexcept {
  const AddressReservation& heap = private_heap().tracked();
  if (!heap.contains(reinterpret_cast<void*>(ptr)) || (ptr & 15) != 0) return BadFreeKind::kInvalid;
  if (block_map().find_region(ptr) != 0) return BadFreeKind::kInvalid;  // inside a live block
  if (reclaimed_header(ptr) != nullptr) return BadFreeKind::kReclaimed;
  if (double_freed_header(ptr) != nullptr) return BadFreeKind::kDouble;
  return BadFreeKind::kInvalid;
}

void report_bad_free(void* ptr, BadFreeKind kind, const char* api_name) noexcept {
  ThreadLocal& tl = tls_thread;
  take_guard(tl);
  if (kind == BadFreeKind::kReclaimed) {
    // The program was right and heapkeeper wrong: one line, and the call is ignored whatever the
    // bad-free policy says (the block is gone: there is nothing left to free). Not a bad free.
    const auto address = reinterpret_cast<uintptr_t>(ptr);
    if (const BlockHeader* header = reclaimed_header(address)) {
      report_reclaimed_call(address, header->size(), header->stack_id, api_name,
                            "after heapkeeper had freed it as unreachable: the call is ignored");
    }
    release_guard(tl);
    return;
  }
  g_bad_frees.fetch_add(1, std::memory_order_relaxed);
  const uintptr_t address = reinterpret_cast<uintptr_t>(ptr);
  const uint32_t current = capture_stack(nullptr, config().stack_depth);
  DiagnosticLine line;
  switch (kind) {
    case BadFreeKind::kDouble: {
      const BlockHeader* header = double_freed_header(address);
      if (header == nullptr) {  // reused meanwhile by a block of another geometry
        line.text("double free of ").hex(address).text(" in ").text(api_name).text("()");
        line.emit();
        print_stack(current, "freed again at:");
        break;
      }
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
        const BlockHeader* header = block_map().header(region);
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
  release_guard(tl);
}

}  // namespace heapkeeper::alloc
