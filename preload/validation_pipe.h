// libunwind's memory-validation pipe, which is two tokens and no pipe (own_pipes.cpp): its reads
// reach heapkeeper through the exported read wrapper (blocking_calls.cpp), which hands a read of
// the token to validation_read.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <optional>

namespace heapkeeper::preload {

// What libunwind's pipe2 gets for its two ends: negative, so never a descriptor of the program's.
inline constexpr int kValidationReadToken = -0x4b50;
inline constexpr int kValidationWriteToken = -0x4b51;

// libunwind's read of its pipe's read end (`caller`, the wrapper's return address, in libunwind's
// code, or inside heapkeeper's capture): -1 with EAGAIN, an empty pipe (any other error would make
// libunwind close its ends and ask for new ones). Nothing for another read of that number: the
// program's own fails as the kernel says.
std::optional<ssize_t> read_validation_pipe(void* buffer, size_t size, void* caller);

// For the blocking-call wrappers (one template for all, this overload for read's signature): the
// result of a read of the token, or nothing when the call is not one.
template <typename Function, typename... Arguments>
inline std::optional<ssize_t> validation_read(Function, void*, Arguments...) {
  return std::nullopt;
}
inline std::optional<ssize_t> validation_read(ssize_t (*)(int, void*, size_t), void* caller, int fd, void* buffer,
                                              size_t size) {
  if (fd != kValidationReadToken) [[likely]]
    return std::nullopt;
  return read_validation_pipe(buffer, size, caller);
}

}  // namespace heapkeeper::preload
