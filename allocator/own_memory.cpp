// See own_memory.h.
#include "allocator/own_memory.h"

#include <sys/uio.h>
#include <unistd.h>

#include "allocator/syscall_filter.h"

namespace heapkeeper::alloc {

bool read_own_memory(uintptr_t address, void* out, size_t bytes) noexcept {
  if (syscall_filter_installed()) return false;
  iovec local{out, bytes};
  iovec remote{reinterpret_cast<void*>(address), bytes};
  return process_vm_readv(gettid(), &local, 1, &remote, 1, 0) == static_cast<ssize_t>(bytes);
}

}  // namespace heapkeeper::alloc
