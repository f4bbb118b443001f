// HeapProfile: the heap of a process as profile formats see it — stacks with named frames, the
// modules those frames are in, and per stack the live bytes and blocks, or the leaked ones and
// their kind. One model for every format heapkeeper speaks to other tools (pprof's profile.proto,
// analysis/pprof_profile.h; folded stacks and the SVG flame graph, viewer/), built from a raw dump
// (the exit hand-off and `heapkeeper export PID`: every module's range and load bias known) or from
// a JSON report (viewer/profile_source.h: what its frames say).
//
// Samples are facts, not estimates: heapkeeper sees every block, so a sample's bytes are the exact
// sum over its blocks (pprof's "unsampled form", period 1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "analysis/module_symbolizer.h"
#include "report/leak_kind.h"
#include "report/raw_dump.h"

namespace heapkeeper::analysis {

struct ProfileModule {
  std::string path;      // as /proc/PID/maps named it
  std::string build_id;  // lower-case hex; empty when unknown
  // [start, limit) as mapped, and the file offset start maps. What pprof needs to turn an address
  // back into a file address and re-symbolize.
  uint64_t start = 0, limit = 0, file_offset = 0;
};

struct ProfileFrame {
  uint64_t address = 0;  // the return address as recorded; 0 for a frame heapkeeper made up
  int32_t module = -1;   // index into HeapProfile::modules, -1 when in none
  uint64_t module_offset = 0;
  std::string function;  // "" when unknown
  std::string file;      // "" when unknown
  int line = 0;
  bool python = false;  // a Python frame: function, file and line are the Python source's
};

// Live bytes, or leaked ones of each leak kind (report/leak_kind.h).
enum class SampleKind : uint8_t { kLive, kDirectLeak, kIndirectLeak, kCycleLeak };
SampleKind leak_sample_kind(report::LeakKind kind);
// "direct", "indirect", "cycle" (the pprof label leak_kind); "" for live samples.
const char* leak_kind_label(SampleKind kind);

struct ProfileSample {
  uint32_t stack = 0;  // index into HeapProfile::stacks
  SampleKind kind = SampleKind::kLive;
  uint64_t blocks = 0, bytes = 0;
  int32_t thread = -1;  // index into HeapProfile::threads: the allocating thread; -1 when unknown
};

struct ProfileThread {
  int32_t tid = 0;   // 0 when no longer known
  std::string name;  // may be empty
};

struct HeapProfile {
  int32_t pid = 0;
  std::string program;
  int64_t written_at = 0;  // seconds since the epoch
  uint64_t live_bytes = 0, live_blocks = 0;
  bool leaks_known = false;  // a scan ran: leaked samples mean what they say, even when none
  std::vector<ProfileModule> modules;
  std::vector<std::vector<ProfileFrame>> stacks;  // innermost frame (the allocating call) first
  std::vector<ProfileSample> samples;
  std::vector<ProfileThread> threads;
};

// The profile of a dump: its live sites split by thread when it was made for a profile
// (report::kWantProfile), else the sites it lists; frames named by `symbolizer`, leak groups that the dump's
// suppressions hide left out (as the JSON report leaves them out).
HeapProfile profile_of_dump(const report::RawReport& dump, ModuleSymbolizer& symbolizer);

// Adds the sample of `live_bytes`/`live_blocks` that the listed sites do not account for (a report
// lists only the largest sites) as one stack, "[other allocation sites]". Builders call it last.
void add_unlisted_sites(HeapProfile& profile);

// One stack's weight in a flame graph: frame names root first (the outermost call first, the
// allocating function last), and its bytes. Live bytes, or with `leaks` leaked bytes (direct and
// indirect together). Stacks with equal names are merged; largest first, then by name.
struct FoldedStack {
  std::vector<std::string> frames;
  uint64_t bytes = 0;
};
std::vector<FoldedStack> folded_stacks(const HeapProfile& profile, bool leaks);

// The folded-stacks text flamegraph.pl, inferno and speedscope read: "main;make;leaf 4096" a line.
std::string folded_text(const std::vector<FoldedStack>& stacks);

// How a frame is shown where one short name is wanted (folded stacks, flame graphs): its function,
// or "module-file-name+0xoffset", or "0xaddress". Never holds ';' or a line break.
std::string frame_name(const HeapProfile& profile, const ProfileFrame& frame);

}  // namespace heapkeeper::analysis
