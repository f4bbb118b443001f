// SegmentReader: opening a tracked process's shared-memory segment from `heapkeeper`, checking it
// before trusting a byte of it, taking consistent snapshots and sending commands.
//
// Every way a segment can be wrong yields a one-line reason and no crash: not there, another uid
// (refused unless we are root), too small or truncated, wrong magic or version, a producer that is
// gone or whose pid was reused. Snapshots are copied under the producer's seqlock and then
// sanitised (counts clamped to the arrays, strings terminated), so callers can use them freely.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "analysis/module_symbolizer.h"
#include "stats/shm_layout.h"

namespace heapkeeper::view {

struct SegmentInfo {
  pid_t pid = 0;
  std::string program, command_line;
  uint64_t start_time_ns = 0;
  bool producer_alive = false;   // the process exists and is the one that created the segment
  bool producer_exited = false;  // it marked the segment as exited
  // The process's state as ps shows it (R, S, D, T, t, Z...) while it is alive, else 0.
  char process_state = 0;
  bool stopped() const { return process_state == 'T' || process_state == 't'; }
  // "running", "sleeping", "stopped"...; "exited" or "stale" once the producer is gone.
  std::string state_name() const;
};

// A segment file in /dev/shm and the pid its name claims.
struct SegmentFile {
  pid_t pid = 0;
  std::string path;
};

class SegmentReader {
 public:
  ~SegmentReader();
  // Opens the segment of process `pid`: its files are found by listing /dev/shm, and one is
  // trusted only if it validates, names that pid, comes from our pid namespace and belongs to the
  // process's owner (anyone can create files in /dev/shm). On failure returns false and sets
  // `error` to one line.
  // A segment still being made is waited for (up to `unfinished_retries_left` tries 50 ms apart).
  bool open(pid_t pid, bool for_commands, std::string& error, int unfinished_retries_left = 60);
  // Opens one listed file with the same checks.
  bool open_file(const SegmentFile& file, bool for_commands, std::string& error);
  // Opens a segment file by path, checking only the file itself (tests, fuzzing).
  bool open_path(const std::string& path, bool for_commands, std::string& error);
  // Checks a mapped segment of `size` bytes; the reason on failure. Pure: used by the fuzzer too.
  static bool validate(const void* data, size_t size, uid_t owner, std::string& error);

  SegmentInfo info() const;
  const std::string& path() const { return path_; }
  // A consistent, sanitised copy of the latest snapshot; false (with `error`) if the producer
  // keeps rewriting it faster than it can be copied. A reader opened for commands also tells the
  // producer it is watching (the site and leak tables are built only then) and waits briefly for
  // a snapshot that has them. With `figures_only`, only the figures and the scans are copied
  // (stats::try_read_snapshot_figures) and nothing is symbolized: what list, export and serve's
  // /metrics need, in a tenth of the time; the other tables of `out` are left as they were.
  bool snapshot(stats::Snapshot& out, std::string& error, bool figures_only = false) const;
  // Sends a command (with its argument, if it takes one) and waits for the answer (JSON) up to
  // `timeout_ms`.
  bool command(stats::Command command, int timeout_ms, std::string& response, std::string& error,
               const std::string& argument = {});
  // A fresh report as the process sends it: its raw dump (report/raw_dump.h), frames unnamed, made
  // for a profile (report::kWantProfile: live sites split by thread, every module's range).
  bool profile_dump(int timeout_ms, report::RawReport& dump, std::string& error);

  static void sanitise(stats::Snapshot& snapshot);
  // Every heapkeeper segment file in /dev/shm (whoever owns it), by pid.
  static std::vector<SegmentFile> list_files();
  // Whether the last open_path failed on a segment its process had not finished making (sized
  // too small, or a header without its magic number yet): worth a moment's wait, not an error.
  bool last_was_unfinished() const { return last_unfinished_; }
  // Whether the segment's file shrank under the mapping while it was read (its owner truncated
  // it): the pages past its new end were replaced with zeros instead of raising SIGBUS, and what
  // was read from them is not to be believed.
  bool cut_short() const;
  // The pids those files name, each once.
  static std::vector<pid_t> list_segments();
  // Removes `file` if it is the remains of a dead process (stats::segment_is_remains) that we may
  // remove (ours, or we are root). True if removed.
  static bool remove_if_remains(const SegmentFile& file);

 private:
  void close();
  // command(), the raw dump left unrendered when `render` is false.
  bool exchange(stats::Command command, int timeout_ms, std::string& response, std::string& error,
                const std::string& argument, bool render);
  bool trusted_for(pid_t pid, std::string& error) const;
  bool read_snapshot(stats::Snapshot& out, std::string& error, bool figures_only = false) const;
  // Whether the header still says what it said at open (a valid segment of the same process).
  bool header_unchanged(std::string& error) const;
  // Names the raw frames of a sanitised snapshot from its module table (the producer publishes
  // addresses only: symbolizing happens here, with a cache that lasts as long as the reader).
  void name_frames(stats::Snapshot& snapshot) const;
  mutable std::unique_ptr<analysis::ModuleSymbolizer> symbolizer_;
  bool writable_ = false;
  int fd_ = -1;
  void* mapping_ = nullptr;
  size_t size_ = 0;
  int guard_slot_ = -1;  // the mapping's entry in the SIGBUS guard (segment_reader.cpp), or -1
  uid_t owner_ = 0;
  pid_t producer_pid_ = 0;  // the header's at open: a read that finds another refuses the segment
  std::string path_;
  const stats::SharedSegment* segment_ = nullptr;
  mutable std::unique_ptr<stats::RawSnapshot> raw_;  // read_snapshot's copy of what was published
  bool last_unfinished_ = false;
};

}  // namespace heapkeeper::view
