// The vector registers read out of XSAVE images (collector/xsave_image.h): images built here by hand
// in the standard layout, with AVX-512's components too, which the machines that run the suite may
// not have (integration.never_invented.ymm tests the real thing where there is AVX). Offsets are the
// ones Intel's and AMD's CPUs report in CPUID leaf 0xD: YMM_Hi128 at 576, Opmask at 1088,
// ZMM_Hi256 at 1152, Hi16_ZMM at 1664.
#include "collector/xsave_image.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "report/register_words.h"

namespace heapkeeper::collect {
namespace {

constexpr XsaveLayout kAvx512Layout{576, 1152, 1664, 1088, 2688};
constexpr uint64_t kAvx = 0x7;      // x87, SSE, AVX
constexpr uint64_t kAvx512 = 0xe7;  // and opmask, ZMM_Hi256, Hi16_ZMM
constexpr uint64_t kFiller = 0xfefefefefefefefe;

// An image whose every word past the FXSAVE area's start says where it is (offset | 1 << 48).
std::vector<unsigned char> image_of(size_t size, uint64_t xcr0_at_464, uint64_t xstate_bv) {
  std::vector<unsigned char> image(size);
  for (size_t at = 0; at + 8 <= size; at += 8) {
    const uint64_t word = at | uint64_t{1} << 48;
    std::memcpy(image.data() + at, &word, 8);
  }
  std::memcpy(image.data() + 464, &xcr0_at_464, 8);
  std::memcpy(image.data() + 512, &xstate_bv, 8);
  return image;
}

uint64_t from(size_t image_offset) { return image_offset | uint64_t{1} << 48; }

struct Registers {
  uint64_t words[report::kRegisterWords];
  Registers() {
    for (uint64_t& w : words) w = kFiller;
  }
};

TEST(XsaveImage, Avx512ImageFillsEveryVectorRegister) {
  const auto image = image_of(2688, kAvx512, kAvx512);
  Registers r;
  EXPECT_EQ(take_ptrace_xstate(image.data(), image.size(), kAvx512Layout, r.words), report::kRegisterWords);
  EXPECT_EQ(r.words[report::kXmmAt], from(160));                                 // xmm0, low word
  EXPECT_EQ(r.words[report::kXmmAt + 2 * 15 + 1], from(160 + 248));              // xmm15, high word
  EXPECT_EQ(r.words[report::kYmmHighAt + 2 * 5], from(576 + 16 * 5));            // ymm5 bits 128..191
  EXPECT_EQ(r.words[report::kZmmHighAt + 4 * 2 + 3], from(1152 + 32 * 2 + 24));  // zmm2 bits 448..511
  EXPECT_EQ(r.words[report::kHighZmmAt + 8 * 4 + 7], from(1664 + 64 * 4 + 56));  // zmm20 bits 448..511
  EXPECT_EQ(r.words[report::kHighZmmAt + 8 * 16 - 1], from(2688 - 8));           // zmm31's last word
  EXPECT_EQ(r.words[report::kOpmaskAt], from(1088));                             // k0
  EXPECT_EQ(r.words[report::kOpmaskAt + 7], from(1088 + 56));                    // k7
  EXPECT_EQ(r.words[report::kX87At], from(32));                                  // st0 / mm0
  EXPECT_EQ(r.words[report::kX87At + 2 * 7], from(32 + 16 * 7));                 // st7 / mm7
  EXPECT_EQ(r.words[0], kFiller);  // the general registers are the caller's
}

TEST(XsaveImage, ComponentsInTheirInitialStateAreZeros) {
  // XSTATE_BV without AVX-512's upper parts: their bytes (here not zero) are not the registers.
  const auto image = image_of(2688, kAvx512, kAvx | 0x20);
  Registers r;
  EXPECT_EQ(take_ptrace_xstate(image.data(), image.size(), kAvx512Layout, r.words), report::kRegisterWords);
  EXPECT_EQ(r.words[report::kYmmHighAt], from(576));
  for (uint32_t i = report::kZmmHighAt; i < report::kOpmaskAt; ++i) EXPECT_EQ(r.words[i], 0u) << i;
  EXPECT_EQ(r.words[report::kOpmaskAt], from(1088));  // opmask (0x20) is in the image
  const auto no_sse = image_of(2688, kAvx512, 0x1);
  EXPECT_EQ(take_ptrace_xstate(no_sse.data(), no_sse.size(), kAvx512Layout, r.words), report::kRegisterWords);
  EXPECT_EQ(r.words[report::kX87At + 2 * 3], from(32 + 16 * 3));  // x87 (0x1) is
  for (uint32_t i = report::kXmmAt; i < report::kRegisterWords; ++i) {
    if (i < report::kX87At || i >= report::kX87At + report::kX87Words) {
      EXPECT_EQ(r.words[i], 0u) << i;
    }
  }
  const auto nothing = image_of(2688, kAvx512, 0);
  EXPECT_EQ(take_ptrace_xstate(nothing.data(), nothing.size(), kAvx512Layout, r.words), report::kRegisterWords);
  for (uint32_t i = report::kXmmAt; i < report::kRegisterWords; ++i) EXPECT_EQ(r.words[i], 0u) << i;
}

TEST(XsaveImage, RegisterCountIsWhatTheKernelEnabled) {
  Registers r;
  const auto avx = image_of(2688, kAvx, kAvx512);
  EXPECT_EQ(take_ptrace_xstate(avx.data(), avx.size(), kAvx512Layout, r.words), report::kZmmHighAt);
  EXPECT_EQ(r.words[report::kZmmHighAt], kFiller);  // nothing written past the count
  const auto sse = image_of(2688, 0x3, kAvx512);
  EXPECT_EQ(take_ptrace_xstate(sse.data(), sse.size(), kAvx512Layout, r.words), report::kYmmHighAt);
  // A CPU without AVX-512 (no offsets for it) whatever the image says.
  const XsaveLayout avx_only{576, 0, 0, 0, 832};
  const auto both = image_of(2688, kAvx512, kAvx512);
  EXPECT_EQ(take_ptrace_xstate(both.data(), both.size(), avx_only, r.words), report::kZmmHighAt);
}

TEST(XsaveImage, ShortImages) {
  Registers r;
  const auto header_only = image_of(575, kAvx512, kAvx512);
  EXPECT_EQ(take_ptrace_xstate(header_only.data(), header_only.size(), kAvx512Layout, r.words), 0u);
  EXPECT_EQ(r.words[report::kXmmAt], kFiller);
  // Cut (a kernel that knows fewer features, a smaller buffer): what is not there reads as zeros.
  const auto cut = image_of(1664, kAvx512, kAvx512);
  EXPECT_EQ(take_ptrace_xstate(cut.data(), cut.size(), kAvx512Layout, r.words), report::kRegisterWords);
  EXPECT_EQ(r.words[report::kZmmHighAt + 63], from(1664 - 8));
  EXPECT_EQ(r.words[report::kHighZmmAt], 0u);
}

// A signal frame's fpstate: struct _fpx_sw_bytes at 464 (magic1, extended_size, xfeatures,
// xstate_size), FP_XSTATE_MAGIC2 right after the image.
std::vector<unsigned char> frame_of(uint32_t xstate_size, uint64_t xfeatures, uint32_t magic1, uint32_t magic2) {
  std::vector<unsigned char> frame = image_of(xstate_size + 4, 0, kAvx512);
  const uint32_t extended_size = xstate_size + 4;
  std::memcpy(frame.data() + 464, &magic1, 4);
  std::memcpy(frame.data() + 468, &extended_size, 4);
  std::memcpy(frame.data() + 472, &xfeatures, 8);
  std::memcpy(frame.data() + 480, &xstate_size, 4);
  std::memcpy(frame.data() + xstate_size, &magic2, 4);
  return frame;
}

TEST(XsaveImage, SignalFrame) {
  Registers r;
  const auto frame = frame_of(2696, kAvx512 | 0x200, 0x46505853, 0x46505845);  // with PKRU (bit 9)
  EXPECT_EQ(take_signal_frame_xstate(frame.data(), kAvx512Layout, r.words), report::kRegisterWords);
  EXPECT_EQ(r.words[report::kXmmAt], kFiller);  // xmm0..15 are the caller's (the frame's _xmm)
  EXPECT_EQ(r.words[report::kYmmHighAt + 31], from(576 + 248));
  EXPECT_EQ(r.words[report::kHighZmmAt + 127], from(2688 - 8));
  EXPECT_EQ(r.words[report::kOpmaskAt + 1], from(1088 + 8));  // k1
  EXPECT_EQ(r.words[report::kX87At], kFiller);                // st0..7 are the caller's (the frame's _st)
  const auto avx = frame_of(832, kAvx, 0x46505853, 0x46505845);
  EXPECT_EQ(take_signal_frame_xstate(avx.data(), kAvx512Layout, r.words), report::kZmmHighAt);
}

TEST(XsaveImage, SignalFrameWithoutTheMagicsIsFxsaveOnly) {
  Registers r;
  const auto legacy = frame_of(2696, kAvx512, 0, 0x46505845);
  EXPECT_EQ(take_signal_frame_xstate(legacy.data(), kAvx512Layout, r.words), report::kYmmHighAt);
  const auto bad_end = frame_of(2696, kAvx512, 0x46505853, 0);
  EXPECT_EQ(take_signal_frame_xstate(bad_end.data(), kAvx512Layout, r.words), report::kYmmHighAt);
  EXPECT_EQ(r.words[report::kYmmHighAt], kFiller);
}

TEST(XsaveImage, ThisMachinesLayout) {
  const XsaveLayout layout = query_xsave_layout();
  if (__builtin_cpu_supports("avx")) {
    EXPECT_GE(layout.ymm_high, 576u);
    EXPECT_GE(layout.end, layout.ymm_high + 256);
  }
  if (__builtin_cpu_supports("avx512f")) {
    EXPECT_GE(layout.zmm_high, 576u);
    EXPECT_GE(layout.high_zmm, 576u);
    EXPECT_GE(layout.opmask, 576u);
  }
}

TEST(XsaveImage, X87RegistersFromAnFxsaveArea) {
  unsigned char area[128];
  for (unsigned i = 0; i < sizeof area; ++i) area[i] = static_cast<unsigned char>(i);
  // st2: 0x7f12345678a0 as fildq loads it (exponent 46: the significand is it shifted up 17 bits).
  const uint64_t pointer = 0x7f12345678a0;
  const uint64_t significand = pointer << 17;
  const uint16_t sign_and_exponent = 16383 + 46;
  std::memcpy(area + 16 * 2, &significand, 8);
  std::memcpy(area + 16 * 2 + 8, &sign_and_exponent, 2);
  // st3: the same value negated; st4: 2.5 (not an integer).
  std::memcpy(area + 16 * 3, &significand, 8);
  const uint16_t negative = sign_and_exponent | 0x8000;
  std::memcpy(area + 16 * 3 + 8, &negative, 2);
  const uint64_t two_and_a_half = uint64_t{5} << 61;
  const uint16_t exponent_one = 16383 + 1;
  std::memcpy(area + 16 * 4, &two_and_a_half, 8);
  std::memcpy(area + 16 * 4 + 8, &exponent_one, 2);
  Registers r;
  take_x87(area, r.words);
  uint64_t st5 = 0;
  std::memcpy(&st5, area + 16 * 5, 8);  // the significand: all of mm5
  EXPECT_EQ(r.words[report::kX87At + 2 * 5], st5);
  EXPECT_EQ(r.words[report::kX87At + 2 * 2], significand);
  EXPECT_EQ(r.words[report::kX87At + 2 * 2 + 1], pointer);  // the integer fistpq would store
  EXPECT_EQ(r.words[report::kX87At + 2 * 3 + 1], 0u);
  EXPECT_EQ(r.words[report::kX87At + 2 * 4 + 1], 0u);
  EXPECT_EQ(r.words[report::kX87At - 1], kFiller);
  EXPECT_EQ(r.words[report::kX87At + report::kX87Words], kFiller);
}

}  // namespace
}  // namespace heapkeeper::collect
