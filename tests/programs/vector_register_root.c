// A block whose only reference lives in a vector register of the busy main thread for about a
// second (never_invented.sh vector and ymm). Scans every 100 ms must find the block reachable: no
// leak line, nothing collected, and the program's own free is an ordinary free.
//   vector_register_root [xmm]  the pointer in xmm15. Compilers keep pointers there too: a spill
//       to an SSE register, a 16-byte move of two pointers. Before the SSE registers were roots
//       the scans read the general registers only (ptrace's NT_PRSTATUS, the signal fallback's
//       gregs): detect mode reported the block leaked, and collect mode freed it while the program
//       still used it ("heapkeeper reclaimed this block too early" at its free).
//   vector_register_root ymm    the pointer in bits 128..191 of ymm15, every other vector register
//       zeroed (vzeroall): glibc's memcpy moves data through ymm registers, and code built with
//       -mavx2 keeps four pointers in one. Before the upper halves were roots (XSAVE's YMM_Hi128,
//       from ptrace's NT_X86_XSTATE and the signal frame's extended fpstate) the block was collected
//       as in xmm's case. Exits 77 where the CPU (or the kernel) has no AVX.
//   vector_register_root mmx|st|k  the pointer in mm7, in st0 (loaded with fildq, stored back with
//       fistpq: a 64-bit copy through the x87 unit), or in the AVX-512 opmask register k7 (GCC
//       spills general registers there): before st0..7 and k0..7 were roots the block was collected
//       the same way. k exits 77 where the CPU has no AVX-512BW (kmovq).
//   vector_register_root gs  the pointer in the GS base (arch_prctl), which the signal fallback's
//       ucontext does not hold: it was collected under HEAPKEEPER_STOP_METHOD=signals.
#include <asm/prctl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const uintptr_t kMask = 0x5a5a5a5a5aUL;

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

// The block, returned masked: no plain copy of its address stays in a register or a live frame.
__attribute__((noinline)) static uintptr_t make_masked(void) {
  char* p = malloc(4000);
  if (p == NULL) return 0;
  memset(p, 'A', 4000);
  uintptr_t masked = (uintptr_t)p ^ kMask;
  p = NULL;
  volatile char scrub[256];
  for (size_t i = 0; i < sizeof scrub; ++i) scrub[i] = 0;
  return masked;
}

// Unmasks into xmm15, clears every general register that held it, spins `iterations` times,
// and takes the pointer back from xmm15.
__attribute__((noinline)) static char* hold_in_xmm(uintptr_t masked, uint64_t iterations) {
  uintptr_t out;
  __asm__ volatile(
      "xorq %[k], %[m]\n\t"
      "movq %[m], %%xmm15\n\t"
      "xorq %[m], %[m]\n\t"
      "xorl %%ecx, %%ecx; xorl %%edx, %%edx; xorl %%esi, %%esi; xorl %%edi, %%edi\n\t"
      "xorl %%r8d, %%r8d; xorl %%r9d, %%r9d; xorl %%r10d, %%r10d; xorl %%r11d, %%r11d\n\t"
      "1: pause\n\t"
      "decq %[n]\n\t"
      "jnz 1b\n\t"
      "movq %%xmm15, %[o]\n\t"
      : [o] "=r"(out), [m] "+r"(masked), [n] "+r"(iterations)
      : [k] "r"(kMask)
      : "xmm15", "cc", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11");
  return (char*)out;
}

// Unmasks into bits 128..191 of ymm15 with every vector register zeroed before (so that no stale
// copy elsewhere keeps the block), clears every general register that held it, spins `iterations`
// times, and takes the pointer back from ymm15. AVX only (vinsertf128, vextractf128).
__attribute__((noinline)) static char* hold_in_ymm_high(uintptr_t masked, uint64_t iterations) {
  uintptr_t out;
  __asm__ volatile(
      "vzeroall\n\t"
      "xorq %[k], %[m]\n\t"
      "vmovq %[m], %%xmm14\n\t"
      "vinsertf128 $1, %%xmm14, %%ymm15, %%ymm15\n\t"
      "vxorps %%xmm14, %%xmm14, %%xmm14\n\t"
      "xorq %[m], %[m]\n\t"
      "xorl %%ecx, %%ecx; xorl %%edx, %%edx; xorl %%esi, %%esi; xorl %%edi, %%edi\n\t"
      "xorl %%r8d, %%r8d; xorl %%r9d, %%r9d; xorl %%r10d, %%r10d; xorl %%r11d, %%r11d\n\t"
      "1: pause\n\t"
      "decq %[n]\n\t"
      "jnz 1b\n\t"
      "vextractf128 $1, %%ymm15, %%xmm14\n\t"
      "vmovq %%xmm14, %[o]\n\t"
      "vzeroupper\n\t"
      : [o] "=r"(out), [m] "+r"(masked), [n] "+r"(iterations)
      : [k] "r"(kMask)
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
        "xmm13", "xmm14", "xmm15", "cc", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11");
  return (char*)out;
}

// The same in mm7, the x87 stack's top (as the integer fildq converts) or k7.
__attribute__((noinline)) static char* hold_in_mmx(uintptr_t masked, uint64_t iterations) {
  uintptr_t out;
  __asm__ volatile(
      "xorq %[k], %[m]\n\t"
      "movq %[m], %%mm7\n\t"
      "xorq %[m], %[m]\n\t"
      "xorl %%ecx, %%ecx; xorl %%edx, %%edx; xorl %%esi, %%esi; xorl %%edi, %%edi\n\t"
      "xorl %%r8d, %%r8d; xorl %%r9d, %%r9d; xorl %%r10d, %%r10d; xorl %%r11d, %%r11d\n\t"
      "1: pause\n\t"
      "decq %[n]\n\t"
      "jnz 1b\n\t"
      "movq %%mm7, %[o]\n\t"
      "emms\n\t"
      : [o] "=r"(out), [m] "+r"(masked), [n] "+r"(iterations)
      : [k] "r"(kMask)
      : "mm7", "cc", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11");
  return (char*)out;
}

__attribute__((noinline)) static char* hold_in_x87(uintptr_t masked, uint64_t iterations) {
  uintptr_t out;
  uint64_t slot;
  __asm__ volatile(
      "xorq %[k], %[m]\n\t"
      "movq %[m], %[s]\n\t"
      "fildq %[s]\n\t"
      "movq $0, %[s]\n\t"
      "xorq %[m], %[m]\n\t"
      "xorl %%ecx, %%ecx; xorl %%edx, %%edx; xorl %%esi, %%esi; xorl %%edi, %%edi\n\t"
      "xorl %%r8d, %%r8d; xorl %%r9d, %%r9d; xorl %%r10d, %%r10d; xorl %%r11d, %%r11d\n\t"
      "1: pause\n\t"
      "decq %[n]\n\t"
      "jnz 1b\n\t"
      "fistpq %[s]\n\t"
      "movq %[s], %[o]\n\t"
      "movq $0, %[s]\n\t"
      : [o] "=r"(out), [m] "+r"(masked), [n] "+r"(iterations), [s] "=m"(slot)
      : [k] "r"(kMask)
      : "cc", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11");
  return (char*)out;
}

__attribute__((noinline)) static char* hold_in_opmask(uintptr_t masked, uint64_t iterations) {
  uintptr_t out;
  __asm__ volatile(
      "xorq %[k], %[m]\n\t"
      "kmovq %[m], %%k7\n\t"
      "xorq %[m], %[m]\n\t"
      "xorl %%ecx, %%ecx; xorl %%edx, %%edx; xorl %%esi, %%esi; xorl %%edi, %%edi\n\t"
      "xorl %%r8d, %%r8d; xorl %%r9d, %%r9d; xorl %%r10d, %%r10d; xorl %%r11d, %%r11d\n\t"
      "1: pause\n\t"
      "decq %[n]\n\t"
      "jnz 1b\n\t"
      "kmovq %%k7, %[o]\n\t"
      "kxorq %%k7, %%k7, %%k7\n\t"
      : [o] "=r"(out), [m] "+r"(masked), [n] "+r"(iterations)
      : [k] "r"(kMask)
      : "cc", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11");
  return (char*)out;
}

// The same in the GS base (a program may keep a pointer there: arch_prctl, wrgsbase), which the
// ucontext of the signal fallback does not hold.
__attribute__((noinline)) static char* hold_in_gs_base(uintptr_t masked, uint64_t iterations) {
  if (syscall(SYS_arch_prctl, ARCH_SET_GS, masked ^ kMask) != 0) return NULL;
  __asm__ volatile(
      "xorl %%ecx, %%ecx; xorl %%edx, %%edx; xorl %%esi, %%esi; xorl %%edi, %%edi\n\t"
      "xorl %%r8d, %%r8d; xorl %%r9d, %%r9d; xorl %%r10d, %%r10d; xorl %%r11d, %%r11d; xorl %%eax, %%eax\n\t"
      "1: pause\n\t"
      "decq %[n]\n\t"
      "jnz 1b\n\t"
      : [n] "+r"(iterations)
      :
      : "cc", "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11");
  unsigned long back = 0;
  syscall(SYS_arch_prctl, ARCH_GET_GS, &back);
  syscall(SYS_arch_prctl, ARCH_SET_GS, 0UL);
  return (char*)back;
}

int main(int argc, char** argv) {
  const char* where = argc > 1 ? argv[1] : "xmm";
  const int upper_half = strcmp(where, "ymm") == 0;
  if (upper_half && !__builtin_cpu_supports("avx")) {
    fprintf(stderr, "vector_register_root: no AVX here\n");
    return 77;
  }
  const int opmask = strcmp(where, "k") == 0;
  if (opmask && !__builtin_cpu_supports("avx512bw")) {
    fprintf(stderr, "vector_register_root: no AVX-512BW here\n");
    return 77;
  }
  char* (*hold)(uintptr_t, uint64_t) = strcmp(where, "gs") == 0    ? hold_in_gs_base
                                       : upper_half                ? hold_in_ymm_high
                                       : opmask                    ? hold_in_opmask
                                       : strcmp(where, "mmx") == 0 ? hold_in_mmx
                                       : strcmp(where, "st") == 0  ? hold_in_x87
                                                                   : hold_in_xmm;
  // Calibrate: how long a million spins take here (pause's cost varies from CPU to CPU). The
  // fastest of three: a preemption or heapkeeper's start-up during one only makes it slower, and
  // a hold cut short by that would see fewer scans than the test asks for.
  uint64_t per_million = UINT64_MAX;
  for (int i = 0; i < 3; ++i) {
    uint64_t start = now_ns();
    hold(kMask ^ (uintptr_t)&start, 1000000);
    uint64_t took = now_ns() - start;
    if (took < per_million) per_million = took;
  }
  if (per_million == 0) per_million = 1;
  const uint64_t spins = (uint64_t)(1000000.0 * 1.2e9 / (double)per_million);  // about 1.2 s

  uintptr_t masked = make_masked();
  if (masked == 0) return 1;
  char* q = hold(masked, spins);
  char* other = malloc(4000);  // would take the block's place had it been freed
  if (other != NULL) memset(other, 'B', 4000);
  int intact = q[0] == 'A' && q[3999] == 'A';
  printf("block %s\n", intact ? "intact" : "CHANGED");
  free(other);
  free(q);
  return intact ? 0 : 1;
}
