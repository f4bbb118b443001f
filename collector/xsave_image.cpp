// Reading the vector registers out of an XSAVE image (see xsave_image.h).
#include "collector/xsave_image.h"

#include <cpuid.h>

#include <algorithm>
#include <cstring>

#include "report/register_words.h"

namespace heapkeeper::collect {
namespace {

// The FXSAVE area (the image's first 512 bytes): st0..7 at 32 (16 bytes each), xmm0..15 at 160, the
// bytes software may use at 464.
constexpr size_t kLegacyX87At = 32;
constexpr size_t kLegacyXmmAt = 160;
constexpr size_t kSoftwareBytesAt = 464;
// The XSAVE header follows: XSTATE_BV, the components the image holds, is its first word.
constexpr size_t kHeaderAt = 512;
constexpr size_t kHeaderBytes = 64;
constexpr size_t kExtendedAreaAt = kHeaderAt + kHeaderBytes;

// XCR0 and XSTATE_BV bits (Intel SDM vol. 1, 13.1).
constexpr uint64_t kX87Feature = uint64_t{1} << 0;
constexpr uint64_t kSseFeature = uint64_t{1} << 1;
constexpr uint64_t kOpmaskFeature = uint64_t{1} << 5;
constexpr uint64_t kYmmHighFeature = uint64_t{1} << 2;
constexpr uint64_t kZmmHighFeature = uint64_t{1} << 6;
constexpr uint64_t kHighZmmFeature = uint64_t{1} << 7;

// The signal frame's struct _fpx_sw_bytes, at kSoftwareBytesAt: magic1 (u32), extended_size
// (u32), xfeatures (u64), xstate_size (u32); FP_XSTATE_MAGIC2 (u32) follows the image.
constexpr uint32_t kFrameMagic1 = 0x46505853;  // FP_XSTATE_MAGIC1
constexpr uint32_t kFrameMagic2 = 0x46505845;  // FP_XSTATE_MAGIC2
constexpr size_t kFrameFeaturesAt = kSoftwareBytesAt + 8;
constexpr size_t kFrameSizeAt = kSoftwareBytesAt + 16;

template <typename T>
T load(const unsigned char* at) {
  T value;
  std::memcpy(&value, at, sizeof(value));
  return value;
}

// One component's registers, or zeros: its XSTATE_BV bit is clear (its initial state, whose bytes
// the kernel need not have written), or it does not fit in the image.
void copy_component(const unsigned char* image, size_t size, bool present, uint32_t offset, uint32_t words,
                    uint64_t* out) {
  const size_t bytes = size_t{words} * sizeof(uint64_t);
  if (present && offset >= kExtendedAreaAt && offset + bytes <= size)
    std::memcpy(out, image + offset, bytes);
  else
    std::memset(out, 0, bytes);
}

// The components above xmm15 that `enabled` (XCR0's user features) and the CPU's layout have.
uint32_t take_upper_parts(const unsigned char* image, size_t size, uint64_t enabled, const XsaveLayout& layout,
                          uint64_t* registers) {
  const uint64_t present = load<uint64_t>(image + kHeaderAt);
  if ((enabled & kYmmHighFeature) == 0 || layout.ymm_high == 0) return report::kYmmHighAt;
  copy_component(image, size, (present & kYmmHighFeature) != 0, layout.ymm_high, report::kYmmHighWords,
                 registers + report::kYmmHighAt);
  // The kernel enables AVX-512's three components together, or none.
  constexpr uint64_t kAvx512 = kOpmaskFeature | kZmmHighFeature | kHighZmmFeature;
  if ((enabled & kAvx512) != kAvx512 || layout.zmm_high == 0 || layout.high_zmm == 0 || layout.opmask == 0)
    return report::kZmmHighAt;
  copy_component(image, size, (present & kZmmHighFeature) != 0, layout.zmm_high, report::kZmmHighWords,
                 registers + report::kZmmHighAt);
  copy_component(image, size, (present & kHighZmmFeature) != 0, layout.high_zmm, report::kHighZmmWords,
                 registers + report::kHighZmmAt);
  copy_component(image, size, (present & kOpmaskFeature) != 0, layout.opmask, report::kOpmaskWords,
                 registers + report::kOpmaskAt);
  return report::kRegisterWords;
}

// CPUID.(EAX=0xD,ECX=component): EAX the size, EBX the offset in the standard layout.
uint32_t component_offset(unsigned component, unsigned expected_size) {
  unsigned size = 0, offset = 0, flags = 0, unused = 0;
  __cpuid_count(0xD, component, size, offset, flags, unused);
  return size == expected_size && offset >= kExtendedAreaAt ? offset : 0;
}

}  // namespace

XsaveLayout query_xsave_layout() {
  XsaveLayout layout;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  // XSAVE, and the kernel's use of it (OSXSAVE): without them there is no leaf 0xD to trust.
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0 || (ecx & bit_XSAVE) == 0 || (ecx & bit_OSXSAVE) == 0) return layout;
  if (__get_cpuid_max(0, nullptr) < 0xD) return layout;
  layout.ymm_high = component_offset(2, report::kYmmHighWords * sizeof(uint64_t));
  layout.zmm_high = component_offset(6, report::kZmmHighWords * sizeof(uint64_t));
  layout.high_zmm = component_offset(7, report::kHighZmmWords * sizeof(uint64_t));
  layout.opmask = component_offset(5, report::kOpmaskWords * sizeof(uint64_t));
  const auto end_of = [](uint32_t offset, uint32_t words) { return offset == 0 ? 0 : offset + words * 8; };
  layout.end = std::max({uint32_t{kExtendedAreaAt}, end_of(layout.ymm_high, report::kYmmHighWords),
                         end_of(layout.zmm_high, report::kZmmHighWords), end_of(layout.high_zmm, report::kHighZmmWords),
                         end_of(layout.opmask, report::kOpmaskWords)});
  return layout;
}

void take_x87(const void* st_space, uint64_t* registers) {
  const auto* area = static_cast<const unsigned char*>(st_space);
  for (size_t i = 0; i < report::kX87Registers; ++i) {
    // 80 bits: the significand (its integer bit explicit, at bit 63), then sign and exponent.
    const auto significand = load<uint64_t>(area + 16 * i);
    const auto sign_and_exponent = load<uint16_t>(area + 16 * i + 8);
    const int exponent = (sign_and_exponent & 0x7fff) - 16383;
    // A positive value from 1 to 2^64 - 1 whose fraction is zero, as fildq makes of an integer.
    uint64_t integer = 0;
    if ((sign_and_exponent & 0x8000) == 0 && exponent >= 0 && exponent <= 63) {
      const unsigned shift = 63 - static_cast<unsigned>(exponent);
      if (shift == 0 || (significand & ((uint64_t{1} << shift) - 1)) == 0) integer = significand >> shift;
    }
    registers[report::kX87At + 2 * i] = significand;
    registers[report::kX87At + 2 * i + 1] = integer;
  }
}

uint32_t take_ptrace_xstate(const unsigned char* image, size_t size, const XsaveLayout& layout, uint64_t* registers) {
  if (size < kExtendedAreaAt) return 0;
  const uint64_t present = load<uint64_t>(image + kHeaderAt);
  if ((present & kX87Feature) != 0)
    take_x87(image + kLegacyX87At, registers);
  else
    std::memset(registers + report::kX87At, 0, report::kX87Words * sizeof(uint64_t));
  // xmm0..15 are in the FXSAVE area (below the extended one): zeros in their initial state too.
  const size_t xmm_bytes = size_t{report::kXmmWords} * sizeof(uint64_t);
  if ((present & kSseFeature) != 0)
    std::memcpy(registers + report::kXmmAt, image + kLegacyXmmAt, xmm_bytes);
  else
    std::memset(registers + report::kXmmAt, 0, xmm_bytes);
  return take_upper_parts(image, size, load<uint64_t>(image + kSoftwareBytesAt), layout, registers);
}

uint32_t take_signal_frame_xstate(const void* fpstate, const XsaveLayout& layout, uint64_t* registers) {
  const auto* image = static_cast<const unsigned char*>(fpstate);
  if (load<uint32_t>(image + kSoftwareBytesAt) != kFrameMagic1) return report::kYmmHighAt;
  const uint32_t size = load<uint32_t>(image + kFrameSizeAt);
  // The kernel's own check before it restores the frame: the second magic right after the image.
  if (size < kExtendedAreaAt || load<uint32_t>(image + size) != kFrameMagic2) return report::kYmmHighAt;
  return take_upper_parts(image, size, load<uint64_t>(image + kFrameFeaturesAt), layout, registers);
}

}  // namespace heapkeeper::collect
