// Implementation of the quarantine bitmap and of the "reclaimed too early" line (see quarantine.h).
#include "allocator/quarantine.h"

#include <dlfcn.h>
#include <sys/mman.h>

#include <cstring>

#include "allocator/block_map.h"
#include "allocator/diagnostics.h"
#include "allocator/internal_mappings.h"
#include "allocator/stack_table.h"
#include "allocator/unloaded_modules.h"

namespace heapkeeper::alloc {
namespace {

Quarantine g_quarantine;

// The bits are published once, before the counter says anything is held.
std::atomic<std::atomic<uint64_t>*> g_bits{nullptr};

std::atomic<uint64_t>* bits_for_collector() {
  std::atomic<uint64_t>* bits = g_bits.load(std::memory_order_acquire);
  if (bits != nullptr) return bits;
  // Only the collector holds blocks, one scan at a time: no race to map the bitmap.
  bits = static_cast<std::atomic<uint64_t>*>(map_internal(block_map().heap_size() / 16 / 8, true));
  g_bits.store(bits, std::memory_order_release);
  return bits;
}

bool granule_of(uintptr_t region, size_t& word, uint64_t& bit) {
  const BlockMap& map = block_map();
  if (region - map.heap_base() >= map.heap_size()) return false;
  const size_t granule = (region - map.heap_base()) >> 4;
  word = granule >> 6;
  bit = uint64_t{1} << (granule & 63);
  return true;
}

}  // namespace

Quarantine& quarantine() noexcept { return g_quarantine; }

bool Quarantine::hold(uintptr_t region) noexcept {
  std::atomic<uint64_t>* bits = bits_for_collector();
  size_t word;
  uint64_t bit;
  if (bits == nullptr || !granule_of(region, word, bit)) return false;
  if ((bits[word].fetch_or(bit, std::memory_order_acq_rel) & bit) != 0) return false;
  held_.fetch_add(1, std::memory_order_release);
  return true;
}

bool Quarantine::release(uintptr_t region) noexcept {
  std::atomic<uint64_t>* bits = g_bits.load(std::memory_order_acquire);
  size_t word;
  uint64_t bit;
  if (bits == nullptr || !granule_of(region, word, bit)) return false;
  if ((bits[word].load(std::memory_order_relaxed) & bit) == 0) return false;
  if ((bits[word].fetch_and(~bit, std::memory_order_acq_rel) & bit) == 0) return false;
  held_.fetch_sub(1, std::memory_order_release);
  return true;
}

void Quarantine::forget_all() noexcept {
  std::atomic<uint64_t>* bits = g_bits.load(std::memory_order_acquire);
  if (bits != nullptr) madvise(bits, block_map().heap_size() / 16 / 8, MADV_DONTNEED);  // reads zeroes again
  held_.store(0, std::memory_order_release);
}

bool Quarantine::holds(uintptr_t region) const noexcept {
  std::atomic<uint64_t>* bits = g_bits.load(std::memory_order_acquire);
  size_t word;
  uint64_t bit;
  if (bits == nullptr || !granule_of(region, word, bit)) return false;
  return (bits[word].load(std::memory_order_acquire) & bit) != 0;
}

namespace {

void emit_reclaimed_line(uintptr_t user_pointer, size_t size, uint32_t stack_id, const char* api_name,
                         const char* what) {
  DiagnosticLine line;
  line.text("heapkeeper reclaimed this block too early: ");
  if (api_name != nullptr) line.text(api_name).text("(");
  line.hex(user_pointer);
  if (api_name != nullptr) line.text(")");
  line.text(" (").number(size).text(" bytes) ").text(what).text("; allocated at");
  // One line: the first frames, named as dladdr knows them (no symbolizer on this path).
  StackView view = stack_table().frames(stack_id);
  if (view.depth == 0) line.text(" (no stack recorded)");
  constexpr uint32_t kFrames = 6;
  for (uint32_t i = 0; i < view.depth && i < kFrames; ++i) {
    line.text(i == 0 ? " " : " < ");
    // A library closed since: dladdr would name whatever is mapped there now.
    UnloadedModule unloaded;
    if (unloaded_module_for(view.frames[i], view.generation, &unloaded)) {
      const char* slash = std::strrchr(unloaded.path, '/');
      line.text(slash != nullptr ? slash + 1 : unloaded.path).text("+").hex(view.frames[i] - unloaded.load_bias);
      continue;
    }
    Dl_info info;
    const bool known = dladdr(reinterpret_cast<void*>(view.frames[i] - 1), &info) != 0;
    if (known && info.dli_sname != nullptr) {
      line.text(info.dli_sname);
    } else if (known && info.dli_fname != nullptr) {  // a static function: its module and offset
      const char* slash = std::strrchr(info.dli_fname, '/');
      line.text(slash != nullptr ? slash + 1 : info.dli_fname)
          .text("+")
          .hex(view.frames[i] - reinterpret_cast<uintptr_t>(info.dli_fbase));
    } else {
      line.hex(view.frames[i]);
    }
  }
  if (view.depth > kFrames) line.text(" < ...");
  line.emit();
}

}  // namespace

void report_reclaimed_too_early(uintptr_t user_pointer, size_t size, uint32_t stack_id, const char* what) noexcept {
  emit_reclaimed_line(user_pointer, size, stack_id, nullptr, what);
}

void report_reclaimed_call(uintptr_t user_pointer, size_t size, uint32_t stack_id, const char* api_name,
                           const char* what) noexcept {
  emit_reclaimed_line(user_pointer, size, stack_id, api_name, what);
}

}  // namespace heapkeeper::alloc
