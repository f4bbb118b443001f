// Memory protection keys (pkeys) while a scan reads the heap in place.
//
// A program may tag part of its heap with pkey_mprotect and keep the access for its own threads,
// through their PKRU register. The scanning thread starts with the default rights, none to keys
// 1-15, and faulted on those pages (SIGSEGV, SEGV_PKUERR: the program died at the first periodic
// scan). process_vm_readv, which reads the roots, ignores protection keys; the marker reads blocks
// in place. So the scan opens every key on the thread that marks, for the time it marks, and puts
// the thread's rights back after. Nothing happens where the CPU or the kernel has no protection
// keys (CPUID leaf 7, ECX.OSPKE).
#ifndef HEAPKEEPER_COLLECTOR_PROTECTION_KEYS_H
#define HEAPKEEPER_COLLECTOR_PROTECTION_KEYS_H

#include <cstdint>

namespace heapkeeper::collect {

class AllProtectionKeysOpen {
 public:
  AllProtectionKeysOpen();
  ~AllProtectionKeysOpen();
  AllProtectionKeysOpen(const AllProtectionKeysOpen&) = delete;
  AllProtectionKeysOpen& operator=(const AllProtectionKeysOpen&) = delete;

 private:
  bool changed_ = false;
  uint32_t saved_ = 0;
};

}  // namespace heapkeeper::collect

#endif  // HEAPKEEPER_COLLECTOR_PROTECTION_KEYS_H
