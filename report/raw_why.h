// The raw answer to `heapkeeper why PID TARGET`: who holds a block, or the blocks of an allocation
// site, as facts the traced process knows without symbolizing (collector/why_answer.h writes it),
// for the `heapkeeper` binary to name and render (analysis/why_renderer.h). One header for both
// ends, as raw_dump.h is for reports.
//
// The request (the command channel's argument, text, at most stats::kArgumentCapacity bytes):
//   "PATHS\naddress HEX"             a block address (interior allowed), or
//   "PATHS\nranges\nLOW HIGH\n..."   the blocks whose allocation stack has a frame in one of these
//                                    [LOW, HIGH) address ranges (hex): a function's code, which
//                                    the binary finds by name in the process's modules, or
//   "PATHS\nstack ID"                the blocks of one allocation site: stacks the report would
//                                    group with stack ID (decimal; the viewer's sites carry it)
// The answer (integers fixed-width little-endian, as in raw_dump.h; "bytes" is u32 length + bytes):
//   header   u64 magic kRawWhyMagic, u32 version, u32 outcome (RawWhyOutcome), u64 total size
//   target   u64 blocks, u64 bytes, u64 retained_bytes, bytes stop_method
//   paths    u32 n + n × {root, chain}:
//            root  u8 kind (collector::RootKind, 0: unknown), u64 word (where the pointer lies),
//                  u64 range start, u64 range end, i32 thread, u64 stack_pointer,
//                  u32 module (kModuleData: the module holding the word, or kNoModule),
//                  u32 n + n × {u64 address, u32 module} (kStack: the return addresses between the
//                  stack pointer and the word, nearest the word first: the first names the
//                  function whose frame holds the pointer)
//            chain u32 n + n × {u64 address, u64 size, u32 stack}, from the block the root points
//                  at to the target
//   modules, stacks, python  as in raw_dump.h (every stack a chain names is there)
// The reader checks every length, count, index and stack reference, as parse_raw_dump does.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "report/raw_dump.h"

namespace heapkeeper::report {

inline constexpr uint64_t kRawWhyMagic = 0x3159485750504b48ull;  // "HKPPWHY1" little-endian
inline constexpr uint32_t kRawWhyVersion = 2;                    // 2: Python frames and the python section
inline constexpr size_t kRawWhyMaxPaths = 16;

enum class RawWhyOutcome : uint32_t {
  kFound = 0,        // the target's blocks are reachable: paths follow
  kNoSiteBlock = 1,  // no reachable block has a frame in the ranges
  kLeaked = 2,       // the address is in a live block nothing reachable holds
  kNoLiveBlock = 3,  // the address is in no live block
};

// Root kinds on the wire: the values of collector::RootKind (reference_graph.h).
enum class RawRootKind : uint8_t {
  kUnknown = 0,
  kGlobal = 1,
  kStack = 2,
  kRegisters = 3,
  kAnonymous = 4,
  kKernel = 5,
  kBootstrap = 6
};

struct RawWhyRoot {
  RawRootKind kind = RawRootKind::kUnknown;
  uint64_t word = 0, range_start = 0, range_end = 0;
  int32_t thread = 0;
  uint64_t stack_pointer = 0;
  uint32_t module = kNoModule;
  std::vector<RawFrame> holder_frames;
};

struct RawWhyStep {
  uint64_t address = 0, size = 0;
  uint32_t stack_id = 0;
};

struct RawWhyPath {
  RawWhyRoot root;
  std::vector<RawWhyStep> chain;
};

struct RawWhy {
  RawWhyOutcome outcome = RawWhyOutcome::kFound;
  uint64_t blocks = 0, bytes = 0, retained_bytes = 0;
  std::string stop_method;
  std::vector<RawWhyPath> paths;
  std::vector<RawModule> modules;
  std::vector<RawStack> stacks;
  std::vector<RawPythonCode> python_codes;

  const RawStack* stack(uint32_t id) const;
};

std::string serialize_raw_why(const RawWhy& why);
// False with `error` one line when the bytes are not a well-formed answer.
bool parse_raw_why(std::string_view bytes, RawWhy& why, std::string& error);

// The request: what the process is asked about.
struct WhyRequest {
  size_t paths = 3;
  uint64_t address = 0;                               // an address target, or
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [low, high) of a function's code, or
  uint32_t stack_id = 0;                              // an allocation site
};
std::string serialize_why_request(const WhyRequest& request);
// False with `error` one line when the text is not a request.
bool parse_why_request(std::string_view text, WhyRequest& request, std::string& error);

}  // namespace heapkeeper::report
