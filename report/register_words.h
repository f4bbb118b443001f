// Where each register lies in a stopped thread's register root (collector/world_stop.h's
// StoppedThread::registers), for the collector that fills it and for `why`, which names the word a
// root path starts from by its index there (analysis/why_renderer.cpp). One header for both ends,
// as raw_why.h is for the answer that carries the index.
//
// Words, 8 bytes each, in this order; a thread's register_count ends the list where its machine's
// registers end (no AVX: after xmm15; AVX without AVX-512: after the ymm upper halves):
//   [0, 27)     user_regs_struct (ptrace) or the ucontext's gregs (signals)
//   [27, 59)    xmm0..15, two words each
//   [59, 91)    bits 128..255 of ymm0..15, two words each (XSAVE's YMM_Hi128)
//   [91, 155)   bits 256..511 of zmm0..15, four words each (ZMM_Hi256)
//   [155, 283)  zmm16..31 whole, eight words each (Hi16_ZMM)
// The opmask registers k0..7 hold bit masks, never pointers: not taken.
#pragma once

#include <cstdint>

namespace heapkeeper::report {

inline constexpr uint32_t kGeneralRegisterWords = 27;
inline constexpr uint32_t kXmmAt = kGeneralRegisterWords;
inline constexpr uint32_t kXmmWords = 16 * 2;
inline constexpr uint32_t kYmmHighAt = kXmmAt + kXmmWords;
inline constexpr uint32_t kYmmHighWords = 16 * 2;
inline constexpr uint32_t kZmmHighAt = kYmmHighAt + kYmmHighWords;
inline constexpr uint32_t kZmmHighWords = 16 * 4;
inline constexpr uint32_t kHighZmmAt = kZmmHighAt + kZmmHighWords;
inline constexpr uint32_t kHighZmmWords = 16 * 8;
inline constexpr uint32_t kRegisterWords = kHighZmmAt + kHighZmmWords;
static_assert(kRegisterWords == 283);

}  // namespace heapkeeper::report
