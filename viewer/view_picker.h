// The process picker of `heapkeeper view` without a pid: the tracked processes (as `heapkeeper
// list` shows them: pid, state, uptime, live and leaked bytes, program), refreshed once a second;
// arrows and Enter open one, typing digits jumps to the pid that starts with them, q quits.
// Segments that cannot be read are listed with the reason.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "stats/shm_layout.h"
#include "viewer/segment_reader.h"
#include "viewer/view_screen.h"

namespace heapkeeper::view {

class ProcessPicker {
 public:
  struct Choice {
    std::unique_ptr<SegmentReader> reader;      // null: the user quit
    std::unique_ptr<stats::Snapshot> snapshot;  // the first snapshot of the chosen process
  };

  explicit ProcessPicker(Screen& screen);
  Choice run();

 private:
  struct Entry {
    pid_t pid = 0;
    SegmentFile file;
    std::string state, uptime, live, leaked, program;
    bool readable = false;
  };

  void reload();
  void draw();
  bool open_selected(Choice& choice);
  void jump(char digit);

  Screen& screen_;
  std::vector<Entry> entries_;
  size_t selected_ = 0;
  pid_t selected_pid_ = 0;
  int top_ = 0;
  std::string status_;
  std::string jump_;  // digits typed so far
  std::chrono::steady_clock::time_point jump_time_;
};

}  // namespace heapkeeper::view
