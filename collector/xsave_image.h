// The vector registers beyond xmm0..15 — the upper halves of ymm0..15 (AVX), the upper 256 bits of
// zmm0..15 and zmm16..31 whole, the opmask registers k0..7 (AVX-512) — and st0..7 (mm0..7), read
// from an XSAVE image, for a stopped thread's register
// root (report/register_words.h). glibc's memcpy keeps the data it moves in ymm registers, and code
// built with -mavx2 or -mavx512f keeps four or eight pointers in one: a block referenced only from
// there while its thread is stopped must not look unreachable.
//
// The two stop methods get the same image, the standard (non-compacted) XSAVE layout: ptrace's
// NT_X86_XSTATE regset, and the signal frame's fpstate when the kernel marked it as extended
// (FP_XSTATE_MAGIC1). They differ in the software bytes at 464..511 of the FXSAVE area: ptrace puts
// XCR0 (the enabled user features) in the first eight, the signal frame a struct _fpx_sw_bytes
// (arch/x86/include/uapi/asm/sigcontext.h). Where each component lies comes from CPUID leaf 0xD,
// never from constants; the XSAVE header's XSTATE_BV (byte 512) says which components the image
// holds — one whose bit is clear is in its initial state, all zeros, whatever its bytes are.
//
// Everything here but query_xsave_layout() is plain arithmetic on the image: safe in a signal handler and
// on the ptrace tracer task (no TLS, no errno, no allocation).
#pragma once

#include <cstddef>
#include <cstdint>

namespace heapkeeper::collect {

// Where the components a scan reads lie in the standard XSAVE layout (CPUID.(EAX=0xD,ECX=i).EBX),
// 0 where the CPU has no such component or reports an unexpected size for it.
struct XsaveLayout {
  uint32_t ymm_high = 0;  // YMM_Hi128, component 2: 16 x 16 bytes
  uint32_t zmm_high = 0;  // ZMM_Hi256, component 6: 16 x 32 bytes
  uint32_t high_zmm = 0;  // Hi16_ZMM, component 7: 16 x 64 bytes
  uint32_t opmask = 0;    // Opmask, component 5: 8 x 8 bytes
  uint32_t end = 0;       // the end of the last of them: how much of an image a scan needs (0: no XSAVE)
};

// The layout, asked of CPUID at each call. CPUID traps to the hypervisor in a virtual machine (a
// microsecond or more each time): asked once per scan by ptrace's stop, once by
// install_suspend_handler for the signal handler, never per thread.
XsaveLayout query_xsave_layout();

// st0..7 (mm0..7) from an FXSAVE area's 128 bytes of them (16 a register), into `registers` from
// report::kX87At: each one's low 64 bits and the integer it holds (report/register_words.h). Both stop methods have
// that area: ptrace's images and the signal frame's fpstate.
void take_x87(const void* st_space, uint64_t* registers);

// From ptrace's NT_X86_XSTATE image of `size` bytes (as the kernel returned it, possibly cut at the
// caller's buffer): writes xmm0..15, st0..7 and whatever the machine has above them into `registers`
// (report/register_words.h's order, from report::kXmmAt) and returns the register count, or 0 if
// the image is too short to hold even the XSAVE header (then nothing was written).
uint32_t take_ptrace_xstate(const unsigned char* image, size_t size, const XsaveLayout& layout, uint64_t* registers);

// From a signal frame's fpstate (uc_mcontext.fpregs): writes the registers above xmm15 into
// `registers` from report::kYmmHighAt and returns the register count (report::kYmmHighAt when the
// frame is a plain FXSAVE one, or the machine has no AVX). xmm0..15 and st0..7 are the caller's.
uint32_t take_signal_frame_xstate(const void* fpstate, const XsaveLayout& layout, uint64_t* registers);

}  // namespace heapkeeper::collect
