// Opens every memory protection key on the marking thread (see protection_keys.h).
#include "collector/protection_keys.h"

#include <cpuid.h>

namespace heapkeeper::collect {
namespace {

bool operating_system_uses_pkeys() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (ecx & (1u << 4)) != 0;  // OSPKE: the kernel enabled them (CR4.PKE), RDPKRU and WRPKRU work
}

// RDPKRU and WRPKRU by their bytes: the compiler's intrinsics need -mpku for the whole file.
uint32_t read_pkru() {
  uint32_t eax = 0, edx = 0;
  asm volatile(".byte 0x0f, 0x01, 0xee" : "=a"(eax), "=d"(edx) : "c"(0));
  return eax;
}

void write_pkru(uint32_t value) { asm volatile(".byte 0x0f, 0x01, 0xef" : : "a"(value), "c"(0), "d"(0) : "memory"); }

}  // namespace

AllProtectionKeysOpen::AllProtectionKeysOpen() {
  static const bool pkeys = operating_system_uses_pkeys();
  if (!pkeys) return;
  saved_ = read_pkru();
  if (saved_ == 0) return;  // every key open already
  write_pkru(0);
  changed_ = true;
}

AllProtectionKeysOpen::~AllProtectionKeysOpen() {
  if (changed_) write_pkru(saved_);
}

}  // namespace heapkeeper::collect
