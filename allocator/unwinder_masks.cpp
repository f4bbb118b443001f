// libunwind's signal blocks inside heapkeeper's own unwinds (see unwinder_masks.h).
#include "allocator/unwinder_masks.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <cstring>

#include "allocator/stack_capture.h"

namespace heapkeeper::alloc {
namespace {

CodeRange g_unwinder;

// SIGKILL and SIGSTOP: the kernel never reports them blocked, so no mask a program saved holds
// them both and nothing else.
constexpr uint64_t kMarkerWord = (uint64_t{1} << (SIGKILL - 1)) | (uint64_t{1} << (SIGSTOP - 1));

inline uint64_t first_word(const sigset_t* set) {
  uint64_t word;
  std::memcpy(&word, set, sizeof word);
  return word;
}

}  // namespace

void locate_unwinder() { g_unwinder = code_range_of(reinterpret_cast<uintptr_t>(&unw_step)); }

bool elide_unwinder_mask_call(const sigset_t* set, sigset_t* old, uintptr_t caller) {
  const bool from_unwinder = caller >= g_unwinder.low && caller < g_unwinder.high;
  if (!from_unwinder && (set == nullptr || first_word(set) != kMarkerWord)) return false;
  if (old != nullptr) {
    std::memset(old, 0, sizeof *old);
    std::memcpy(old, &kMarkerWord, sizeof kMarkerWord);
  }
  return true;
}

}  // namespace heapkeeper::alloc
