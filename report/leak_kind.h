// What kind of leak an unreachable block is, as the exit scan classifies it (collector/marker.h).
//
//  - direct:   no other leaked block points to it (LeakSanitizer's term);
//  - indirect: reached from a direct leak — freeing the direct ones would free these too;
//  - cycle:    reached from no direct leak: a member of a cycle of leaked blocks that nothing else
//              points to, or a block only such a cycle reaches. Python's garbage collector exists
//              for these; reference counting alone never frees them. (LeakSanitizer reports them
//              as indirect leaks with no direct leak to start from.)
// The values are the wire format of the raw dump and the live-stats segment: 0 and 1 are what a
// single "direct" flag used to say.
#pragma once

#include <cstdint>

namespace heapkeeper::report {

enum class LeakKind : uint8_t { kIndirect = 0, kDirect = 1, kCycle = 2 };
constexpr uint8_t kLeakKinds = 3;

// "direct", "indirect", "cycle": JSON, pprof labels, the viewer.
constexpr const char* leak_kind_name(LeakKind kind) {
  return kind == LeakKind::kDirect ? "direct" : kind == LeakKind::kCycle ? "cycle" : "indirect";
}
// "Direct", "Indirect", "Cycle": the LeakSanitizer-style text ("Direct leak of ...").
constexpr const char* leak_kind_title(LeakKind kind) {
  return kind == LeakKind::kDirect ? "Direct" : kind == LeakKind::kCycle ? "Cycle" : "Indirect";
}
// The order reports list groups in: direct, then cycles, then indirect.
constexpr int leak_kind_rank(LeakKind kind) { return kind == LeakKind::kDirect ? 0 : kind == LeakKind::kCycle ? 1 : 2; }
// A value read from a dump or a segment; anything else is no kind.
constexpr bool valid_leak_kind(uint32_t value) { return value < kLeakKinds; }

}  // namespace heapkeeper::report
