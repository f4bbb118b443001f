// The shared-memory layout between a tracked process (producer) and `heapkeeper` (readers).
//
// One versioned, fixed-width schema included by both ends, as memray's records.h: no pointers, no
// std types, only fixed-size arrays and integers, so a reader in another process (or another
// build) can check it before trusting it. Each tracked process creates
// /dev/shm/heapkeeper.<pid>.<random> (mode 0600, O_EXCL; see segment_files.h) holding one SharedSegment:
//  - a header identifying the producer (magic, version, sizes, uid, pid, pid namespace, start time,
//    program);
//  - a snapshot published by a background thread at least twice a second under a seqlock: the
//    producer makes `sequence` odd, copies, makes it even again; a reader copies the snapshot and
//    keeps it only if `sequence` was the same even number before and after. Readers never write
//    the snapshot and never block the producer;
//  - a command channel: the owner's `heapkeeper` asks for a scan, a collection, a full report or a
//    trim, and the producer answers in the response area (a raw dump, report/raw_dump.h, which the
//    reader symbolizes and renders; a small JSON object; or {"error": ...}). Readers also leave a heartbeat there: the
//    site and leak tables are built only while somebody is watching.
// Frames are published raw: return address, offset in its module and an index into the snapshot's
// module table (path, build-id, load bias); the reader names them (viewer/segment_reader.h), so the
// traced process never reads DWARF. A Python frame's word (allocator/python_frame_word.h) names no
// module: the snapshot's table of Python code names serves it, and the reader decodes its line.
// Readers must validate everything (see viewer/segment_reader.h): counts are clamped, strings are
// terminated by the reader, and a segment that is too small, of another version or another uid is
// refused with a one-line reason.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace heapkeeper::stats {

inline constexpr uint64_t kSegmentMagic = 0x5045454b50414548ull;  // "HEAPKEEP" little-endian
inline constexpr uint32_t kLayoutVersion = 7;                     // 7: frames published without the reader's names

inline constexpr uint32_t kMaxSites = 100;
inline constexpr uint32_t kMaxFrames = 16;
inline constexpr uint32_t kMaxThreads = 256;
inline constexpr uint32_t kMaxScans = 16;
inline constexpr uint32_t kMaxLeaks = 100;
inline constexpr uint32_t kMaxModules = 64;
inline constexpr uint32_t kNoModuleIndex = UINT32_MAX;
// Set by the reader once it has named a frame a Python frame (allocator/python_frame_word.h).
inline constexpr uint32_t kPythonFrameIndex = UINT32_MAX - 1;
inline constexpr uint32_t kMaxPythonCodes = 128;
inline constexpr uint32_t kSizeClasses = 48;     // log2 buckets of block sizes: [2^i, 2^(i+1))
inline constexpr uint32_t kSeriesLength = 1200;  // 20 minutes at one point a second
inline constexpr uint32_t kResponseCapacity = 4u << 20;
inline constexpr uint32_t kArgumentCapacity = 1024;
inline constexpr uint32_t kMaxRanges = 256;

// A frame as the producer publishes it: the return address (or a Python frame's word), its offset in
// its module and the module's index in the snapshot's table.
struct RawFrame {
  uint64_t address;
  uint64_t module_offset;
  uint32_t module_index;  // into Snapshot::modules, or kNoModuleIndex
  uint32_t reserved;
};

// A frame as a reader holds it: the raw frame, and the line and names the reader looked up. Only
// readers have these: published with the names' room, a watched process's segment and its
// scratch copy took 5.6 KB a site and a leak (1.1 MiB for their 100 each) where the frames need 0.4.
struct Frame {
  uint64_t address;
  uint64_t module_offset;
  uint32_t line;
  uint32_t module_index;  // into Snapshot::modules, or kNoModuleIndex
  char function[128];
  char module[96];
  char file[96];
};

struct ModuleEntry {  // a module frames name: report/raw_dump.h's RawModule at fixed width
  uint64_t load_bias, low, high;
  uint32_t unloaded;         // 1: dlclose'd since the stacks naming it were captured
  uint32_t build_id_length;  // bytes of build_id used (0: none)
  uint8_t build_id[64];
  char path[256];  // as /proc/self/maps names it; a longer path is cut (and then names nothing)
};

// The names of the code of a Python frame: report/raw_dump.h's RawPythonCode at fixed width. The
// reader decodes lines from the location table (cut to `linetable` when longer: later lines are
// then unknown).
struct PythonCodeEntry {
  uint64_t key;
  int32_t first_line;
  uint32_t linetable_length;  // bytes of linetable used
  char qualname[128];
  char filename[192];
  uint8_t linetable[1024];
};

template <typename FrameType>
struct SiteOf {  // an allocation site (stack): what of it is live now
  uint64_t live_bytes, live_blocks;
  uint64_t allocations;                  // total allocations made from this stack since start
  double allocation_rate;                // per second, over the last publishing interval
  uint64_t leaked_bytes, leaked_blocks;  // from the last scan
  // What the site retains as a whole (collector/retained_analysis.h), from the last scan;
  // retained_known 0 when that scan did not compute it for this site.
  uint64_t retained_bytes;
  double growth_bytes_per_second;  // over the last samples (stats/site_growth.h)
  uint32_t growing, retained_known;
  uint32_t stack_id;
  uint32_t depth;  // frames stored (<= kMaxFrames)
  FrameType frames[kMaxFrames];
};
using Site = SiteOf<Frame>;
using RawSite = SiteOf<RawFrame>;

struct ThreadFigures {
  int32_t tid;
  uint32_t index;     // heapkeeper's thread number
  int64_t net_bytes;  // allocated minus freed by this thread (frees of others' blocks count here)
  uint64_t allocations, frees;
  char name[16];
};

struct ScanFigures {
  uint64_t number;
  uint64_t time_ns;  // CLOCK_REALTIME at the scan
  double pause_ms;
  uint64_t reachable_blocks, leaked_blocks, leaked_bytes, new_leaked_blocks, new_leaked_bytes;
  uint64_t reclaimed_blocks, reclaimed_bytes;
  uint32_t ok, at_exit;
};

template <typename FrameType>
struct LeakOf {
  uint32_t kind;  // report::LeakKind: 1 direct, 0 indirect, 2 cycle
  uint32_t depth;
  uint64_t blocks, bytes, new_blocks, age_scans;
  FrameType frames[kMaxFrames];
};
using Leak = LeakOf<Frame>;
using RawLeak = LeakOf<RawFrame>;

struct SeriesPoint {
  uint64_t time_ns;
  uint64_t live_bytes;
  uint64_t leaked_bytes;
};

// What a range of the process's address space holds, for the RSS breakdown the reader makes from
// /proc/PID/smaps (viewer/rss_breakdown.h): the producer knows its own mappings, the reader reads
// what the kernel says is resident in each.
enum class RangeKind : uint32_t {
  kTrackedHeap = 1,      // the tracked reservation: the program's blocks and what jemalloc keeps
  kInternalHeap = 2,     // heapkeeper's own heap (the internal reservation)
  kHeapkeeperTable = 3,  // heapkeeper's side tables: block map, page map, out-of-band headers,
                         // stack table, scan buffers
  kHeapkeeperStack = 4,  // a heapkeeper thread's stack
  kHeapkeeperImage = 5,  // libheapkeeper.so loaded: code, data and bss (bootstrap pool, jemalloc's
                         // radix root)
  kJemallocBoot = 6,     // jemalloc's first metadata block, mapped before heapkeeper's hooks
  kProgramStack = 7,     // a stack of one of the program's threads
};

struct AddressRange {
  uint64_t start, end;
  uint32_t kind;  // RangeKind
  uint32_t reserved;
};

// Who gives memory the program frees back to the system (allocator/heap_trimmer.h).
enum class TrimPolicy : uint32_t { kTrimmer = 1, kCollectDecay = 2, kUsersDecay = 3, kOff = 4 };

// jemalloc's view of a set of arenas (allocator/private_heap.h ArenaFigures).
struct ArenaFigures {
  uint64_t allocated_bytes, active_bytes, dirty_bytes, muzzy_bytes, metadata_bytes;
};

// The producer's half of the RSS breakdown: what only the process can know.
struct MemoryFigures {
  // From one walk over the live blocks and the tracked heap's resident pages (mincore), made in
  // watched snapshots only (`walked` 1): each live block's region split into the bytes the program
  // asked for, its in-band header and the rest (slack), counted where its pages are resident.
  uint64_t live_resident_bytes;
  uint64_t live_untouched_bytes;  // asked for, on pages never touched: not part of RSS
  uint64_t header_bytes;
  uint64_t slack_bytes;
  uint64_t live_region_bytes;  // every live region's bytes, resident or not
  uint64_t walked_blocks;
  ArenaFigures tracked;                // the tracked arenas
  ArenaFigures internal;               // the internal arena (0)
  uint64_t trim_interval_ms;           // the trimmer's interval or the decay time; 0 unknown or off
  uint64_t trim_kept_per_arena_bytes;  // unused bytes the trimmer leaves an arena
  uint32_t trim_policy;                // TrimPolicy
  uint32_t walked;
  uint32_t range_count;
  uint32_t reserved;
  AddressRange ranges[kMaxRanges];
};

// A snapshot's figures and tables. The producer builds and publishes a RawSnapshot (frames without
// names); a reader copies it into a Snapshot and names its frames (viewer/segment_reader.h). Both
// share everything but the frames, at the same offsets up to `sites`.
template <typename FrameType>
struct SnapshotOf {
  uint64_t time_ns;  // CLOCK_REALTIME when published
  uint64_t uptime_ns;
  uint64_t publish_count;
  uint64_t live_bytes, live_blocks, peak_live_bytes;
  uint64_t total_allocations, total_frees;
  double allocation_rate, free_rate;  // per second, over the last interval
  uint64_t heap_reserved_bytes, heap_mapped_bytes, heap_resident_bytes, heap_returned_bytes, heap_active_bytes;
  uint64_t foreign_frees, bad_frees, distinct_stacks, threads_seen;
  uint64_t size_class_blocks[kSizeClasses];
  uint64_t size_class_bytes[kSizeClasses];
  uint32_t site_count, thread_count, scan_count, leak_count;
  uint32_t series_count, series_next;  // ring: points [next - count, next) modulo kSeriesLength
  uint32_t total_site_count;           // sites with live blocks (only the top kMaxSites are here)
  uint32_t symbolized;                 // 1: sites and leaks with raw frames (a reader watches); 0: none
  uint32_t module_count;               // entries of `modules` used
  uint32_t python_code_count;          // entries of `python_codes` used
  MemoryFigures memory;
  SiteOf<FrameType> sites[kMaxSites];  // by live bytes, largest first
  ThreadFigures threads[kMaxThreads];
  ScanFigures scans[kMaxScans];        // oldest first
  LeakOf<FrameType> leaks[kMaxLeaks];  // leaks of the last scan, largest first
  ModuleEntry modules[kMaxModules];
  PythonCodeEntry python_codes[kMaxPythonCodes];
  SeriesPoint series[kSeriesLength];
};
using Snapshot = SnapshotOf<Frame>;
using RawSnapshot = SnapshotOf<RawFrame>;
static_assert(offsetof(Snapshot, sites) == offsetof(RawSnapshot, sites), "the figures lie alike in both");

enum class Command : uint32_t { kNone = 0, kScan = 1, kCollect = 2, kReport = 3, kWhy = 4, kTrim = 6 };
enum class ProducerState : uint32_t { kRunning = 1, kExited = 2 };

struct CommandChannel {
  // Readers that look at stacks write CLOCK_REALTIME here; the producer symbolizes frames only
  // while one did so in the last 30 s (symbolizing costs memory a process nobody watches
  // should not pay).
  uint64_t reader_heartbeat_ns;
  uint32_t owner_pid;   // the reader holding the channel (compare-and-swap 0 -> pid)
  uint32_t request_id;  // the reader increments it after writing `command` (futex word)
  uint32_t command;
  uint32_t response_id;  // the producer sets it to request_id when the response is complete
  int32_t status;        // 0 ok, else an errno-like code
  uint32_t response_length;
  // What the command is about (kWhy: "TARGET\nPATHS"), written before request_id; not terminated.
  uint32_t argument_length;
  char argument[kArgumentCapacity];
  char response[kResponseCapacity];  // JSON, not terminated: use response_length
};

struct SegmentHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t header_size;   // sizeof(SegmentHeader)
  uint64_t segment_size;  // sizeof(SharedSegment)
  uint32_t producer_uid;
  int32_t producer_pid;
  uint64_t start_time_ns;        // CLOCK_REALTIME at start
  uint64_t process_start_ticks;  // /proc/<pid>/stat field 22: tells a reused pid from the producer
  // The producer's pid namespace (/proc/self/ns/pid): a reader in another namespace sharing
  // /dev/shm sees another process under that pid, and must neither trust nor remove the segment.
  uint64_t pid_namespace_device;
  uint64_t pid_namespace_inode;
  uint32_t state;  // ProducerState
  uint32_t publish_interval_ms;
  uint64_t heartbeat_ns;  // CLOCK_REALTIME of the last publish
  char program[256];
  char command_line[512];
};

struct SharedSegment {
  SegmentHeader header;
  uint64_t sequence;  // seqlock over `snapshot` (odd while being written)
  uint64_t reserved[7];
  RawSnapshot snapshot;
  CommandChannel channel;
};

// The seqlock, both ends. Producer and readers call only these, so the protocol lives in one place
// and tests/stats/snapshot_seqlock_test.cpp runs exactly this code on two threads (under TSan in CI).
//
// The snapshot itself is copied in and out one 8-byte word at a time with relaxed atomic accesses,
// never with memcpy: the reader copies while the producer may be writing (it then throws the copy
// away), and in C++ a plain access racing with a write is undefined behaviour whatever is done
// with the result afterwards (Boehm, "Can seqlocks get along with programming language memory
// models?", 2012). On x86-64 a relaxed 8-byte atomic is an ordinary move, so this costs nothing
// but memcpy's wider moves: a copy of the whole snapshot takes well under a millisecond.
static_assert(sizeof(RawSnapshot) % 8 == 0 && offsetof(SharedSegment, snapshot) % 8 == 0 && alignof(RawSnapshot) == 8);
static_assert(offsetof(RawSnapshot, sites) % 8 == 0 && offsetof(RawSnapshot, threads) % 8 == 0 &&
              offsetof(RawSnapshot, scans) % 8 == 0 && offsetof(RawSnapshot, leaks) % 8 == 0 &&
              offsetof(RawSnapshot, modules) % 8 == 0 && offsetof(RawSnapshot, python_codes) % 8 == 0 &&
              offsetof(RawSnapshot, series) % 8 == 0 && sizeof(PythonCodeEntry) % 8 == 0);
static_assert(offsetof(RawSnapshot, memory) % 8 == 0 && sizeof(MemoryFigures) % 8 == 0);
static_assert(sizeof(RawSite) % 8 == 0 && sizeof(ThreadFigures) % 8 == 0 && sizeof(RawLeak) % 8 == 0 &&
              sizeof(ScanFigures) % 8 == 0 && sizeof(SeriesPoint) % 8 == 0 && sizeof(ModuleEntry) % 8 == 0);

// A word of the shared snapshot: may_alias, as the words overlay fields of every type.
using SharedWord = uint64_t __attribute__((may_alias));

// Producer side: `bytes` (a multiple of 8) from private memory into the segment.
inline void store_words(void* shared, const void* from, size_t bytes) {
  auto* out = static_cast<SharedWord*>(shared);
  const auto* in = static_cast<const unsigned char*>(from);
  for (size_t i = 0; i < bytes / 8; ++i) {
    uint64_t word;
    std::memcpy(&word, in + i * 8, 8);
    __atomic_store_n(&out[i], word, __ATOMIC_RELAXED);
  }
}

// Reader side: `bytes` (a multiple of 8) from the segment into private memory.
inline void load_words(void* to, const void* shared, size_t bytes) {
  auto* out = static_cast<unsigned char*>(to);
  const auto* in = static_cast<const SharedWord*>(shared);
  for (size_t i = 0; i < bytes / 8; ++i) {
    const uint64_t word = __atomic_load_n(&in[i], __ATOMIC_RELAXED);
    std::memcpy(out + i * 8, &word, 8);
  }
}

// Publishes what a snapshot uses: its figures and the filled entries of each table (counts within
// capacity). Unused entries stay as they were; readers look only below the counts. The tables
// are most of the snapshot's 330 KB, and copying only what is filled keeps untouched pages of
// the segment (and of the producer's scratch copy) out of the program's resident memory.
inline void store_used(RawSnapshot& shared, const RawSnapshot& from) {
  store_words(&shared, &from, offsetof(RawSnapshot, sites));
  store_words(shared.sites, from.sites, std::min(from.site_count, kMaxSites) * sizeof(RawSite));
  store_words(shared.threads, from.threads, std::min(from.thread_count, kMaxThreads) * sizeof(ThreadFigures));
  store_words(shared.scans, from.scans, sizeof(from.scans));
  store_words(shared.leaks, from.leaks, std::min(from.leak_count, kMaxLeaks) * sizeof(RawLeak));
  store_words(shared.modules, from.modules, std::min(from.module_count, kMaxModules) * sizeof(ModuleEntry));
  store_words(shared.python_codes, from.python_codes,
              std::min(from.python_code_count, kMaxPythonCodes) * sizeof(PythonCodeEntry));
  store_words(shared.series, from.series, sizeof(from.series));
}

// Producer: publishes `snapshot` into the segment (one producer thread at a time).
inline void publish_snapshot(SharedSegment& segment, const RawSnapshot& snapshot) {
  const uint64_t sequence = __atomic_load_n(&segment.sequence, __ATOMIC_RELAXED);
  __atomic_store_n(&segment.sequence, sequence + 1, __ATOMIC_RELAXED);  // odd: being written
  __atomic_thread_fence(__ATOMIC_RELEASE);
  store_used(segment.snapshot, snapshot);
  __atomic_store_n(&segment.sequence, sequence + 2, __ATOMIC_RELEASE);
}

enum class SnapshotRead { kConsistent, kBeingWritten, kNeverPublished };

// Reader: one attempt at a consistent copy of the published snapshot into `out`. kBeingWritten:
// the producer was writing meanwhile (try again); kNeverPublished: nothing published yet.
inline SnapshotRead try_read_snapshot(const SharedSegment& segment, RawSnapshot& out) {
  const uint64_t before = __atomic_load_n(&segment.sequence, __ATOMIC_ACQUIRE);
  if (before % 2 != 0) return SnapshotRead::kBeingWritten;
  load_words(&out, &segment.snapshot, sizeof(out));
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  if (__atomic_load_n(&segment.sequence, __ATOMIC_RELAXED) != before) return SnapshotRead::kBeingWritten;
  return before == 0 ? SnapshotRead::kNeverPublished : SnapshotRead::kConsistent;
}

// try_read_snapshot for readers that want only the figures and the scans (`list`, `export`,
// `serve`'s /metrics): the other tables (sites, threads, leaks, modules, series) are most of the
// snapshot's 330 KB (1.3 MB in a reader's copy, with names), and copying them was most of a
// scrape's time. `out`'s tables are left as they were.
inline SnapshotRead try_read_snapshot_figures(const SharedSegment& segment, Snapshot& out) {
  static_assert(offsetof(Snapshot, sites) % 8 == 0 && offsetof(Snapshot, scans) % 8 == 0 && sizeof(out.scans) % 8 == 0);
  const uint64_t before = __atomic_load_n(&segment.sequence, __ATOMIC_ACQUIRE);
  if (before % 2 != 0) return SnapshotRead::kBeingWritten;
  load_words(&out, &segment.snapshot, offsetof(Snapshot, sites));  // the same prefix in both
  load_words(&out.scans, &segment.snapshot.scans, sizeof(out.scans));
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  if (__atomic_load_n(&segment.sequence, __ATOMIC_RELAXED) != before) return SnapshotRead::kBeingWritten;
  return before == 0 ? SnapshotRead::kNeverPublished : SnapshotRead::kConsistent;
}

// A reader's frames for published ones: address, module and offset as published, no line or names.
inline void expand_frames(const RawFrame (&from)[kMaxFrames], Frame (&to)[kMaxFrames]) {
  for (uint32_t i = 0; i < kMaxFrames; ++i) {
    to[i].address = from[i].address;
    to[i].module_offset = from[i].module_offset;
    to[i].module_index = from[i].module_index;
    to[i].line = 0;
    to[i].function[0] = to[i].module[0] = to[i].file[0] = '\0';
  }
}

// A table of sites or leaks: each entry's figures as published, then its frames.
template <typename RawEntry, typename Entry, size_t kCount>
void expand_entries(const RawEntry (&from)[kCount], Entry (&to)[kCount]) {
  static_assert(offsetof(RawEntry, frames) == offsetof(Entry, frames), "the figures lie alike in both");
  for (size_t i = 0; i < kCount; ++i) {
    std::memcpy(&to[i], &from[i], offsetof(RawEntry, frames));
    expand_frames(from[i].frames, to[i].frames);
  }
}

// A reader's copy of a published snapshot: the figures and tables as they are, each frame with room
// for the line and names the reader adds (empty here).
inline void expand_snapshot(const RawSnapshot& raw, Snapshot& out) {
  std::memcpy(&out, &raw, offsetof(Snapshot, sites));
  expand_entries(raw.sites, out.sites);
  std::memcpy(out.threads, raw.threads, sizeof(out.threads));
  std::memcpy(out.scans, raw.scans, sizeof(out.scans));
  expand_entries(raw.leaks, out.leaks);
  std::memcpy(out.modules, raw.modules, sizeof(out.modules));
  std::memcpy(out.python_codes, raw.python_codes, sizeof(out.python_codes));
  std::memcpy(out.series, raw.series, sizeof(out.series));
}

}  // namespace heapkeeper::stats
