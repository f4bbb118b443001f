// Keeps the calling thread's errno across a scope of heapkeeper's own system calls.
//
// The program sees errno as its own calls left it: start-up's probes (a prctl an older kernel
// refuses, an fcntl on a closed descriptor) must not show through, since C starts main with errno
// 0 and a program may check it there; nor the collector's reads of /proc and its waits, nor a
// wrapper's own look at a descriptor.
#pragma once

#include <cerrno>

namespace heapkeeper::alloc {

class ErrnoKept {
 public:
  ErrnoKept() : saved_(errno) {}
  ~ErrnoKept() { errno = saved_; }
  ErrnoKept(const ErrnoKept&) = delete;
  ErrnoKept& operator=(const ErrnoKept&) = delete;

 private:
  int saved_;
};

}  // namespace heapkeeper::alloc
