// Where each register lies in a stopped thread's register root (collector/world_stop.h's
// StoppedThread::registers), for the collector that fills it and for `why`, which names the word a
// root path starts from by its index there (analysis/why_renderer.cpp). One header for both ends,
// as raw_why.h is for the answer that carries the index.
//
// Words, 8 bytes each, in this order; a thread's register_count ends the list where its machine's
// registers end (no AVX: after st7; AVX without AVX-512: after the ymm upper halves):
//   [0, 27)     user_regs_struct (ptrace) or the ucontext's gregs (signals)
//   [27, 59)    xmm0..15, two words each
//   [59, 75)    st0..7, two words each: its low 64 bits (the significand, all of mmN), and the
//               integer its value is (fildq loads one, fistpq stores it back), or 0
//   [75, 107)   bits 128..255 of ymm0..15, two words each (XSAVE's YMM_Hi128)
//   [107, 171)  bits 256..511 of zmm0..15, four words each (ZMM_Hi256)
//   [171, 299)  zmm16..31 whole, eight words each (Hi16_ZMM)
//   [299, 307)  k0..7, the AVX-512 opmask registers (XSAVE's Opmask)
// An MMX register is a 64-bit integer register to the code that uses it, an x87 register may hold
// a 64-bit integer converted (a copy through fildq/fistpq), and GCC spills general registers to
// opmask registers (kmovq) under AVX-512: a block whose only pointer sat in mm0, st0 or k1 looked
// leaked, and collect mode freed it (found by an adversarial round, helper-61).
#pragma once

#include <cstdint>

namespace heapkeeper::report {

inline constexpr uint32_t kGeneralRegisterWords = 27;
inline constexpr uint32_t kXmmAt = kGeneralRegisterWords;
inline constexpr uint32_t kXmmWords = 16 * 2;
inline constexpr uint32_t kX87At = kXmmAt + kXmmWords;
inline constexpr uint32_t kX87Registers = 8;
inline constexpr uint32_t kX87Words = kX87Registers * 2;
inline constexpr uint32_t kYmmHighAt = kX87At + kX87Words;
inline constexpr uint32_t kYmmHighWords = 16 * 2;
inline constexpr uint32_t kZmmHighAt = kYmmHighAt + kYmmHighWords;
inline constexpr uint32_t kZmmHighWords = 16 * 4;
inline constexpr uint32_t kHighZmmAt = kZmmHighAt + kZmmHighWords;
inline constexpr uint32_t kHighZmmWords = 16 * 8;
inline constexpr uint32_t kOpmaskAt = kHighZmmAt + kHighZmmWords;
inline constexpr uint32_t kOpmaskWords = 8;
inline constexpr uint32_t kRegisterWords = kOpmaskAt + kOpmaskWords;
static_assert(kRegisterWords == 307);

}  // namespace heapkeeper::report
