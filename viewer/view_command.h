// `heapkeeper view [PID]`: the live terminal UI. With a pid, the process screen of that process
// (view_process_screen.h); without, the process picker (view_picker.h) first. A segment that
// cannot be opened is reported in one line, with exit status 1, before the terminal is touched.
#pragma once

#include <sys/types.h>

#include <string>

namespace heapkeeper::view {

// Returns the exit status: 0 after q, 1 when the segment or the terminal cannot be used.
int view_processes(pid_t pid);

// The keys of the live view, one per line, for `heapkeeper view --help`.
std::string view_key_help();

}  // namespace heapkeeper::view
