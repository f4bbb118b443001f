// jemalloc's non-standard API (mallocx, rallocx, xallocx, sallocx, dallocx, sdallocx, nallocx,
// mallctl...) for programs that link jemalloc themselves, such as Debian's redis-server.
//
// Their blocks come from the same tracked heap as malloc's, so every block is accounted for. The
// figures mallctl returns are those of heapkeeper's private jemalloc, which is the allocator the
// program is really using. Writes that would move threads off heapkeeper's arenas or tear them
// down are refused with EPERM.
#include <cerrno>
#include <cstring>

#include "allocator/block_header.h"
#include "allocator/block_map.h"
#include "allocator/engine_internal.h"
#include "allocator/jemalloc_calls.h"
#include "allocator/private_heap.h"

namespace heapkeeper::alloc {
namespace {

size_t alignment_of(int flags) {
  const unsigned lg = static_cast<unsigned>(flags) & 0x3f;
  return lg == 0 ? 16 : (size_t{1} << lg);
}

bool is_protected_control(const char* name) {
  if (name == nullptr) return false;
  if (std::strncmp(name, "thread.arena", 12) == 0) return true;
  if (std::strncmp(name, "arena.", 6) == 0) {
    return std::strstr(name, ".reset") != nullptr || std::strstr(name, ".destroy") != nullptr ||
           std::strstr(name, ".extent_hooks") != nullptr || std::strstr(name, ".dss") != nullptr;
  }
  return false;
}

}  // namespace

void* api_mallocx(size_t size, int flags) noexcept {
  size_t alignment = alignment_of(flags);
  return allocate_tracked(size, alignment < 16 ? 16 : alignment, (flags & MALLOCX_ZERO) != 0);
}

void* api_rallocx(void* ptr, size_t size, int flags) noexcept {
  if (ptr == nullptr) return api_mallocx(size, flags);
  const size_t old_size = api_sallocx(ptr, 0);
  void* p = private_heap().tracked().contains(ptr) ? reallocate_tracked(ptr, size, alignment_of(flags))
                                                   : api_realloc(ptr, size == 0 ? 1 : size);
  if (p != nullptr && (flags & MALLOCX_ZERO) != 0 && size > old_size) {
    std::memset(static_cast<char*>(p) + old_size, 0, size - old_size);
  }
  return p;
}

size_t api_xallocx(void* ptr, size_t size, size_t extra, int flags) noexcept {
  if (!private_heap().tracked().contains(ptr)) return api_sallocx(ptr, flags);
  const UserBlock block = block_of_user_pointer(reinterpret_cast<uintptr_t>(ptr));
  const uintptr_t region = block.region;
  BlockHeader* header = block.header;
  if (region == 0) return 0;
  const size_t offset = header->user_offset();
  const int je_flags = offset <= 16 ? 0 : MALLOCX_LG_ALIGN(header->offset_shift());
  const size_t before = je::sallocx(reinterpret_cast<void*>(region), 0);
  // A block keeps its header where it is: only a large region (whole pages, header out of band)
  // grows or shrinks, and only within large sizes; a slab region stays in its class.
  const size_t after = je::xallocx(reinterpret_cast<void*>(region), size + offset, extra, je_flags);
  if (after != before && after > private_heap().small_max()) block_map().record(region, after, -1);
  // The caller now owns the whole usable size; record that as the block's size.
  const size_t usable = after - offset;
  if (usable < header->size()) {  // shrunk in place
    header->packed = BlockHeader::pack(usable, header->offset_shift(), false, header->thread_index());
  }
  claim_usable_size(region, usable);
  return usable;
}

size_t api_sallocx(const void* ptr, int) noexcept { return api_malloc_usable_size(ptr); }
void api_dallocx(void* ptr, int) noexcept { api_free(ptr); }

size_t api_nallocx(size_t size, int flags) noexcept {
  const size_t alignment = alignment_of(flags);
  const PrivateHeap& heap = private_heap();
  // What mallocx would hand out: the region of the block's placement, less the header in front.
  const BlockPlacement placement = alignment <= 16 ? heap.place_plain(size) : heap.place_aligned(size, alignment);
  const size_t offset = placement.offset_shift == 0 ? 0 : size_t{1} << placement.offset_shift;
  const size_t usable =
      je::nallocx(placement.request, alignment <= 16 ? 0 : MALLOCX_LG_ALIGN(__builtin_ctzll(alignment)));
  return usable == 0 ? 0 : usable - offset;
}

int api_mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen) noexcept {
  if (newp != nullptr && is_protected_control(name)) return EPERM;
  return je::mallctl(name, oldp, oldlenp, newp, newlen);
}

int api_mallctlnametomib(const char* name, size_t* mibp, size_t* miblenp) noexcept {
  return je::mallctlnametomib(name, mibp, miblenp);
}

int api_mallctlbymib(const size_t* mib, size_t miblen, void* oldp, size_t* oldlenp, void* newp,
                     size_t newlen) noexcept {
  // MIBs hide the name; refuse writes to the protected families by their first components
  // (jemalloc numbers "thread" and "arena" at fixed positions only within one build, so look up).
  if (newp != nullptr) {
    size_t thread_arena[2], thread_arena_length = 2;
    if (je::mallctlnametomib("thread.arena", thread_arena, &thread_arena_length) == 0 && miblen == 2 &&
        mib[0] == thread_arena[0] && mib[1] == thread_arena[1]) {
      return EPERM;
    }
    size_t arena_purge[3], arena_length = 3;
    if (je::mallctlnametomib("arena.0.purge", arena_purge, &arena_length) == 0 && miblen >= 3 &&
        mib[0] == arena_purge[0]) {
      return EPERM;  // arena.<i>.* writes (reset, destroy, hooks) stay heapkeeper's
    }
  }
  return je::mallctlbymib(mib, miblen, oldp, oldlenp, newp, newlen);
}

void api_malloc_stats_print(void (*write_cb)(void*, const char*), void* cbopaque, const char* opts) noexcept {
  je::malloc_stats_print(write_cb, cbopaque, opts);
}

}  // namespace heapkeeper::alloc
