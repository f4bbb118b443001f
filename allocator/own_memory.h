// Reading this process's own memory where it may not be mapped, without faulting.
#pragma once

#include <cstddef>
#include <cstdint>

namespace heapkeeper::alloc {

// Copies `bytes` at `address` into `out` with process_vm_readv on the calling thread (by thread id:
// after the main thread's pthread_exit the pid names a zombie without memory), so that memory
// unmapped meanwhile, or never mapped, reads as a failure rather than a fault. False as well under
// a seccomp filter (syscall_filter.h), which may kill the process for that debugging call.
bool read_own_memory(uintptr_t address, void* out, size_t bytes) noexcept;

}  // namespace heapkeeper::alloc
