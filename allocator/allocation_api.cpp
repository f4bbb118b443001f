// The C and C++ allocation entry points with glibc's and libstdc++'s semantics (errno values,
// alignment rules, overflow checks, realloc(p, 0), the new-handler loop), on top of the engine's
// tracked and untracked paths. preload/ forwards each exported symbol here unchanged.
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <new>

#include "allocator/diagnostics.h"
#include "allocator/engine_internal.h"
#include "allocator/jemalloc_calls.h"
#include "allocator/private_heap.h"
#include "allocator/program_cxx_runtime.h"
#include "allocator/thread_registry.h"

namespace heapkeeper::alloc {
namespace {

constexpr size_t kMallocAlignment = 16;  // glibc's MALLOC_ALIGNMENT on x86-64
constexpr size_t kMinChunk = 32;         // glibc's MINSIZE

bool is_power_of_two(size_t value) { return value != 0 && (value & (value - 1)) == 0; }

// glibc 2.36 _mid_memalign: small alignments are plain malloc, others are rounded up to a power
// of two; absurd alignments are EINVAL, sizes that overflow with the alignment ENOMEM.
void* memalign_like(size_t alignment, size_t size) noexcept {
  if (alignment <= kMallocAlignment) return allocate_tracked(size, kMallocAlignment, false);
  if (alignment < kMinChunk) alignment = kMinChunk;
  if (alignment > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return nullptr;
  }
  if (!is_power_of_two(alignment)) {
    size_t rounded = kMallocAlignment * 2;
    while (rounded < alignment) rounded <<= 1;
    alignment = rounded;
  }
  if (size > static_cast<size_t>(PTRDIFF_MAX) - alignment - kMinChunk) {
    errno = ENOMEM;
    return nullptr;
  }
  return allocate_tracked(size, alignment, false);
}

size_t page_size() {
  static const size_t size = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

}  // namespace

void* api_malloc(size_t size) noexcept { return allocate_tracked(size, kMallocAlignment, false); }

void* api_calloc(size_t count, size_t size) noexcept {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return allocate_tracked(total, kMallocAlignment, true);
}

void* api_reallocarray(void* ptr, size_t count, size_t size) noexcept {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return api_realloc(ptr, total);
}

int api_posix_memalign(void** result, size_t alignment, size_t size) noexcept {
  if (alignment % sizeof(void*) != 0 || !is_power_of_two(alignment / sizeof(void*))) return EINVAL;
  const int saved_errno = errno;
  void* p = memalign_like(alignment, size);
  errno = saved_errno;  // posix_memalign reports through its return value
  if (p == nullptr) return ENOMEM;
  *result = p;
  return 0;
}

void* api_aligned_alloc(size_t alignment, size_t size) noexcept { return memalign_like(alignment, size); }
void* api_memalign(size_t alignment, size_t size) noexcept { return memalign_like(alignment, size); }
void* api_valloc(size_t size) noexcept { return memalign_like(page_size(), size); }

void* api_pvalloc(size_t size) noexcept {
  size_t rounded;
  if (__builtin_add_overflow(size, page_size() - 1, &rounded)) {
    errno = ENOMEM;
    return nullptr;
  }
  rounded &= ~(page_size() - 1);
  return memalign_like(page_size(), rounded == 0 ? page_size() : rounded);
}

int api_malloc_trim(size_t) noexcept {
  // Purge every arena's unused dirty pages back to the OS ("arena.<MALLCTL_ARENAS_ALL>.purge").
  return je::mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0) == 0 ? 1 : 0;
}

// The new-handler loop of libstdc++'s operator new. heapkeeper's own code (the guard held) uses
// heapkeeper's private copy of the C++ runtime, where its own catch clauses are; the program's
// allocations use the program's runtime (program_cxx_runtime.h).
void* api_operator_new(size_t size, size_t alignment) {
  for (;;) {
    void* p = allocate_tracked(size, alignment > kMallocAlignment ? alignment : kMallocAlignment, false);
    if (__builtin_expect(p != nullptr, 1)) return p;
    if (tls_thread.guard > 0) {
      // heapkeeper's own code could not allocate: say so, it is heapkeeper's failure, not the program's.
      DiagnosticLine()
          .text("internal allocation of ")
          .number(size)
          .text(" bytes (alignment ")
          .number(alignment)
          .text(") failed; initialised=")
          .number(is_initialized() ? 1 : 0)
          .text(" in_jemalloc=")
          .number(tls_thread.in_jemalloc)
          .emit();
      std::new_handler handler = std::get_new_handler();
      if (handler == nullptr) throw std::bad_alloc();
      handler();
      continue;
    }
    std::new_handler handler = program_new_handler();
    if (handler == nullptr) throw_program_bad_alloc();
    handler();
  }
}

void* api_operator_new_nothrow(size_t size, size_t alignment) noexcept {
  void* p = allocate_tracked(size, alignment > kMallocAlignment ? alignment : kMallocAlignment, false);
  if (__builtin_expect(p != nullptr, 1)) return p;
  if (tls_thread.guard > 0) {
    // heapkeeper's own code: with no new-handler of its own to run, null at once. Throwing
    // std::bad_alloc only to catch it needs memory for the exception, which there may be none of
    // either (a `ulimit -v` start-up: std::terminate killed the program).
    if (std::get_new_handler() == nullptr) return nullptr;
    try {
      return api_operator_new(size, alignment);
    } catch (...) {
      return nullptr;
    }
  }
  // No handler: nothing could free memory, the answer is null. With one, the program's runtime runs
  // the loop and catches what the handler throws.
  if (program_new_handler() == nullptr) return nullptr;
  return program_nothrow_new(size, alignment > kMallocAlignment ? alignment : 0);
}

// libstdc++'s aligned operator new refuses an alignment that is not a power of two (0 included)
// before anything else: std::bad_alloc at once, no new-handler called, and its nothrow form
// returns null. C++ leaves such a call undefined, but the program run without heapkeeper gets
// exactly that (GCC 12's libstdc++), so it gets it under heapkeeper too: a block was returned
// (found by an adversarial tester).
void* api_operator_new_aligned(size_t size, size_t alignment) {
  if (__builtin_expect(!is_power_of_two(alignment), 0)) {
    if (tls_thread.guard > 0) throw std::bad_alloc();  // heapkeeper's own code: its own runtime
    throw_program_bad_alloc();
  }
  return api_operator_new(size, alignment);
}

void* api_operator_new_aligned_nothrow(size_t size, size_t alignment) noexcept {
  if (__builtin_expect(!is_power_of_two(alignment), 0)) return nullptr;
  return api_operator_new_nothrow(size, alignment);
}

void api_operator_delete(void* ptr) noexcept { api_free(ptr); }

}  // namespace heapkeeper::alloc
