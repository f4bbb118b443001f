// A scan or collection asked of a tracked process without freezing `heapkeeper view`: the request
// runs on a thread of its own, through a SegmentReader of its own opened for commands, while the
// screen keeps refreshing and reading keys. The screen polls for the outcome.
//
// The thread is detached: quitting the view while a request is in flight does not wait for it
// (the channel is released by the process when it answers, or taken over by the next reader
// because our pid is gone).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stats/shm_layout.h"

namespace heapkeeper::view {

struct CommandOutcome {
  bool ok = false;
  std::string summary;  // one line: the scan's figures, or why it failed
  // A `why` request: the answer as `heapkeeper why` prints it (why_command.h), one entry a line,
  // strings still escaped as JSON text (report/json_text.h).
  std::vector<std::string> lines;
};

class BackgroundCommand {
 public:
  // Starts `command` on `pid`; false (nothing started) if one is already in flight.
  bool start(pid_t pid, stats::Command command, int timeout_ms);
  // Asks who holds the blocks of the allocation site of stack `stack_id` (`paths` shortest paths).
  bool start_why(pid_t pid, uint32_t stack_id, size_t paths);
  bool busy() const { return shared_ != nullptr; }
  double elapsed_seconds() const;
  // The outcome once the request is over (then the command is no longer busy).
  std::optional<CommandOutcome> poll();

  // One line out of a scan/collect/report answer (the report JSON's "scan" object).
  static CommandOutcome summarise(stats::Command command, pid_t pid, const std::string& response);

 private:
  struct Shared;
  std::shared_ptr<Shared> shared_;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace heapkeeper::view
