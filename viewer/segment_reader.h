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

#include "stats/shm_layout.h"

namespace heapkeeper::view {

struct SegmentInfo {
  pid_t pid = 0;
  std::string program, command_line;
  uint64_t start_time_ns = 0;
  bool producer_alive = false;   // the process exists and is the one that created the segment
  bool producer_exited = false;  // it marked the segment as exited
};

class SegmentReader {
 public:
  ~SegmentReader();
  // Opens /dev/shm/heapkeeper.<pid>; on failure returns false and sets `error`.
  bool open(pid_t pid, bool for_commands, std::string& error);
  // Opens a segment file by path (tests, fuzzing).
  bool open_path(const std::string& path, bool for_commands, std::string& error);
  // Checks a mapped segment of `size` bytes; the reason on failure. Pure: used by the fuzzer too.
  static bool validate(const void* data, size_t size, uid_t owner, std::string& error);

  SegmentInfo info() const;
  // A consistent, sanitised copy of the latest snapshot; false (with `error`) if the producer
  // keeps rewriting it faster than it can be copied.
  bool snapshot(stats::Snapshot& out, std::string& error) const;
  // Sends a command and waits for the answer (JSON) up to `timeout_ms`.
  bool command(stats::Command command, int timeout_ms, std::string& response, std::string& error);

  static void sanitise(stats::Snapshot& snapshot);
  // Pids of every heapkeeper segment in /dev/shm (whoever owns it).
  static std::vector<pid_t> list_segments();
  static std::string segment_path(pid_t pid);

 private:
  void close();
  bool read_snapshot(stats::Snapshot& out, std::string& error) const;
  bool writable_ = false;
  int fd_ = -1;
  void* mapping_ = nullptr;
  size_t size_ = 0;
  const stats::SharedSegment* segment_ = nullptr;
};

}  // namespace heapkeeper::view
