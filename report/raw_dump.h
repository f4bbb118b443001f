// The raw dump: everything a report says about a traced process except names, as the library
// writes it without symbolizing, for the `heapkeeper` binary to symbolize and render (the exit
// report, `heapkeeper report PID`, HEAPKEEPER_REPORT). One header for both ends, as
// stats/shm_layout.h is for the segment.
//
// Facts, not names: summary figures and configuration, the live allocation sites (already merged
// by stack content and sorted), the last leak scan with its groups (suppressions are matched by the
// reader, which knows function names), the stacks those refer to as bare return addresses, each
// frame already attributed to a module of the module map (the module generation rule of
// allocator/unloaded_modules.h applied by the writer, who alone knows it), and the module map itself:
// path, GNU build-id, load bias and range of every module a frame names, unloaded ones included.
//
// Encoding (version kRawDumpVersion). All integers are fixed-width little-endian (the dump never
// leaves the machine, and the writer and reader are the same build's); no padding, no pointers.
//   header   u64 magic kRawDumpMagic, u32 version, u32 flags (RawDumpFlags), u64 total size in
//            bytes (header included)
//   process  i32 pid, i64 started_at, i64 written_at (seconds since the epoch), bytes program
//            (readlink /proc/self/exe), bytes command_line (/proc/self/cmdline: NUL-separated)
//   summary  15 u64: live_bytes, live_blocks, peak_live_bytes, allocations, frees, foreign_frees,
//            bad_frees, distinct_stacks, threads_seen, then heap reserved, mapped, resident,
//            returned, active and internal_mapped bytes
//   config   u32 stack_depth, u8 free_stacks, u8 mode (0 off, 1 detect, 2 collect), u8 on_bad_free
//            (0 abort, 1 continue), u64 scan_interval_ms, u32 n + n bytes (suppression patterns),
//            bytes baseline_path (HEAPKEEPER_BASELINE, empty when unset)
//   sites    u64 live_site_count, u32 n + n × {u32 stack, u64 blocks, u64 bytes}
//   profile  only with kWantProfile: u32 n + n × {u32 stack, u32 thread, u64 blocks, u64 bytes} (live
//            sites split by allocating thread), u32 n + n × {u32 thread, i32 tid, bytes name}
//   scan     u8 present; when 1: u64 number, u8 ok, u8 at_exit, bytes failure, bytes stop_method,
//            20 u64 figures (RawScan, in declaration order), 6 u64 reference histogram, u64 scans,
//            u64 collected_blocks, u64 collected_bytes, u32 n + n × {u8 kind (leak_kind.h), u32 stack,
//            5 u64: blocks, bytes, new_blocks, new_bytes, age_scans}, u32 n + n × {u64 size,
//            u32 references, u32 stack}, then retained sizes: u8 known; when 1: u64 analysis_ns,
//            u64 references, u32 n + n × {u32 stack, u64 blocks, u64 bytes, u64 retained} (sites),
//            u32 n + n × {u64 address, u64 size, u64 retained, u32 stack} (top blocks)
//   modules  u32 n + n × {u8 unloaded, u64 load_bias, u64 low, u64 high, bytes build_id, bytes path}
//   stacks   u32 n + n × {u32 id, u32 depth + depth × {u64 address, u32 module (index into modules,
//            or kNoModule)}}; an address with bit 63 set is a Python frame (allocator/
//            python_frame_word.h: code key and instruction), its module kNoModule
//   python   u32 n + n × {u64 code key, i32 first line, bytes qualname, bytes filename, bytes location
//            table (co_linetable)}: the code of every Python frame the stacks hold that the library
//            has names for (a frame without one is named "??")
// "bytes" is u32 length + that many bytes (any bytes: paths and argv need not be UTF-8).
//
// The reader (parse_raw_dump) trusts nothing: every length and count is checked against what is
// left, module indexes against the module count, stack references against the stacks present, and
// the total against the buffer. A corrupt or truncated dump is refused with one line, never read
// past its end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "report/leak_kind.h"

namespace heapkeeper::report {

inline constexpr uint64_t kRawDumpMagic = 0x504d55445748504bull;  // "KPHWDUMP" little-endian
inline constexpr uint32_t kRawDumpVersion = 6;                    // 6: cycle leaks (leak kinds, cycle_blocks)
inline constexpr uint32_t kNoModule = UINT32_MAX;
// Bounds the reader enforces (beyond "fits in the buffer"), so a hostile dump cannot make it
// allocate more than its own size suggests.
inline constexpr uint32_t kRawDumpMaxDepth = 1024;
inline constexpr uint32_t kRawDumpMaxBuildId = 64;

// What the writer asks of the reader.
enum RawDumpFlags : uint32_t {
  kWantLeakText = 1,  // the LeakSanitizer-style leak report (at exit, for stderr)
  kWantJson = 2,      // the JSON report
  kWantFrames = 4,    // the first stack's frames, one line each (a bad-free report's stacks)
  // A profile of the heap (analysis/heap_profile.h): the dump adds its live sites split by thread
  // (up to kProfileLiveSites) and those threads; the answer carries the gzipped pprof file
  // (HEAPKEEPER_PPROF).
  kWantProfile = 8,
};

// Live sites a dump lists: the largest, as many as the JSON report shows ("live_sites";
// "live_site_count" counts them all); and, split by thread for a profile, enough for any program's
// picture and few enough that a live process's dump fits the segment's response area
// (stats/shm_layout.h, 4 MiB: about 300 bytes a stack of 24 frames). What the listed sites leave
// out becomes one "[other allocation sites]" sample.
inline constexpr size_t kReportLiveSites = 20;
inline constexpr size_t kProfileLiveSites = 4096;
// The argument of the segment's report command (stats::Command::kReport) that asks for a dump
// made for a profile (kWantProfile).
inline constexpr std::string_view kProfileRequest = "profile";

struct RawFrame {
  uint64_t address = 0;         // the return address as recorded
  uint32_t module = kNoModule;  // the module that held it when the stack was captured
};

struct RawStack {
  uint32_t id = 0;
  std::vector<RawFrame> frames;
};

// The names of a Python code object, as the library copied them (allocator/python_code_table.h):
// qualname and filename in UTF-8 (a path's undecodable bytes as themselves), the location table as
// CPython 3.11 encodes it (the reader decodes lines: analysis/python_names.h).
struct RawPythonCode {
  uint64_t key = 0;
  int32_t first_line = 0;
  std::string qualname, filename, linetable;
};

struct RawModule {
  // A function of a module whose file the reader cannot open (the vDSO, a file deleted or replaced
  // while mapped): named by the library from the module's dynamic symbols (dladdr1), for the
  // frames the dump refers to. `start` is an offset from the load bias.
  struct Symbol {
    uint64_t start = 0, size = 0;
    std::string name;
  };
  bool unloaded = false;  // dlclose'd since: named from what was recorded then
  uint64_t load_bias = 0;
  uint64_t low = 0, high = 0;   // [low, high) as mapped
  std::string build_id;         // raw bytes; empty when the object has none
  std::string path;             // as /proc/self/maps names it ("[vdso]" for the vDSO)
  std::vector<Symbol> symbols;  // only for modules without a file to read, see Symbol
};

struct RawSite {
  uint32_t stack_id = 0;
  uint64_t blocks = 0, bytes = 0;
};

// A live site's blocks allocated by one thread (heapkeeper's thread number: RawThread).
struct RawThreadSite {
  uint32_t stack_id = 0, thread = 0;
  uint64_t blocks = 0, bytes = 0;
};

struct RawThread {
  uint32_t thread = 0;  // heapkeeper's thread number (1 = the first thread)
  int32_t tid = 0;      // 0 when no longer known
  std::string name;     // as the thread was named when it started; may be empty
};

struct RawLeakGroup {
  LeakKind kind = LeakKind::kDirect;
  uint32_t stack_id = 0;
  uint64_t blocks = 0, bytes = 0, new_blocks = 0, new_bytes = 0, age_scans = 0;
};

struct RawReferenced {
  uint64_t size = 0;
  uint32_t references = 0, stack_id = 0;
};

struct RawScan {
  bool present = false;  // a scan ran
  uint64_t number = 0;
  bool ok = false, at_exit = false;
  std::string failure, stop_method;
  // The 20 figures, in this order on the wire.
  uint64_t pause_ns = 0, mark_ns = 0, threads_stopped = 0, root_ranges = 0, root_bytes = 0, heap_bytes_marked = 0;
  uint64_t live_blocks = 0, reachable_blocks = 0, leaked_blocks = 0, leaked_bytes = 0;
  uint64_t new_leaked_blocks = 0, new_leaked_bytes = 0, reclaimed_blocks = 0, reclaimed_bytes = 0;
  uint64_t held_blocks = 0, reclaimed_blocks_total = 0, reclaimed_bytes_total = 0;
  uint64_t direct_blocks = 0, indirect_blocks = 0, cycle_blocks = 0;
  uint64_t reference_histogram[6] = {};
  uint64_t scans = 0, collected_blocks = 0, collected_bytes = 0;
  std::vector<RawLeakGroup> groups;  // direct first, then by bytes; suppressions not applied
  std::vector<RawReferenced> most_referenced;
  // Retained sizes (collector/retained_analysis.h), when the scan recorded its reference graph.
  bool retained_known = false;
  uint64_t retained_analysis_ns = 0, references_recorded = 0;
  struct RetainedSite {
    uint32_t stack_id = 0;
    uint64_t blocks = 0, bytes = 0, retained_bytes = 0;
  };
  struct RetainedBlock {
    uint64_t address = 0, size = 0, retained_bytes = 0;
    uint32_t stack_id = 0;
  };
  std::vector<RetainedSite> retained_sites;
  std::vector<RetainedBlock> top_retainers;
};

struct RawReport {
  uint32_t flags = 0;  // RawDumpFlags
  int32_t pid = 0;
  int64_t started_at = 0, written_at = 0;
  std::string program, command_line;
  uint64_t live_bytes = 0, live_blocks = 0, peak_live_bytes = 0, allocations = 0, frees = 0;
  uint64_t foreign_frees = 0, bad_frees = 0, distinct_stacks = 0, threads_seen = 0;
  uint64_t heap_reserved = 0, heap_mapped = 0, heap_resident = 0, heap_returned = 0, heap_active = 0;
  uint64_t heap_internal_mapped = 0;
  uint32_t stack_depth = 0;
  bool free_stacks = false;
  uint8_t mode = 1, on_bad_free = 0;
  uint64_t scan_interval_ms = 0;
  std::vector<std::string> suppressions;
  std::string baseline_path;  // HEAPKEEPER_BASELINE (the reader reads it), or empty
  uint64_t live_site_count = 0;
  std::vector<RawSite> live_sites;  // the largest, in order
  // With kWantProfile: the largest live sites split by thread, and the threads they name.
  std::vector<RawThreadSite> thread_sites;
  std::vector<RawThread> threads;
  RawScan scan;
  std::vector<RawModule> modules;
  std::vector<RawStack> stacks;
  std::vector<RawPythonCode> python_codes;

  // The stack with this id, or null.
  const RawStack* stack(uint32_t id) const;
};

// The reader's answer to a dump (the `heapkeeper` binary to the library): u64 kRawAnswerMagic,
// u32 version, u32 flags (bit 0: leaks remain once suppressions are applied), u64 total size,
// bytes leak_text, bytes json, u32 n + n × {u32 stack, bytes pattern} (suppressed leak groups),
// bytes profile.
inline constexpr uint64_t kRawAnswerMagic = 0x5257534e41504b48ull;  // "HKPANSWR" little-endian
// Where the answer's total size lies, and the header's length: a reader of a stream stops there.
inline constexpr size_t kRawAnswerTotalAt = 16;
inline constexpr size_t kRawAnswerHeaderBytes = 24;
inline constexpr uint64_t kRawAnswerMaxBytes = uint64_t{1} << 32;
struct RawAnswer {
  // A leak group of the dump that a suppression hides: its stack, and the pattern that matched.
  struct Suppressed {
    uint32_t stack_id = 0;
    std::string pattern;
  };
  bool unsuppressed_leaks = false;
  std::vector<Suppressed> suppressed;  // every suppressed group of the dump's scan
  std::string leak_text;               // the LeakSanitizer-style report for stderr (empty: nothing to say), or
                                       // with kWantFrames one named frame a line
  std::string json;                    // the JSON report (when asked for)
  std::string profile;                 // the gzipped pprof profile (kWantProfile)
};
std::string serialize_raw_answer(const RawAnswer& answer);
bool parse_raw_answer(std::string_view bytes, RawAnswer& answer, std::string& error);

// The dump of `report` (writer side).
std::string serialize_raw_dump(const RawReport& report);

// Reads a dump: true, or false with `error` one line saying what is wrong (reader side).
bool parse_raw_dump(std::string_view bytes, RawReport& report, std::string& error);

}  // namespace heapkeeper::report
