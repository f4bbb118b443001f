// Opening the files a user names for heapkeeper's output inside the traced program
// (HEAPKEEPER_LOG_PATH here; HEAPKEEPER_REPORT through report/report_file.h), which often runs as
// root and writes into directories every user can write, such as /tmp.
//
// Linux guards such directories with the sysctls fs.protected_symlinks, protected_fifos and
// protected_regular, but they are settings, and often off (containers, this project's development
// machine). heapkeeper applies their rule itself to the last component of the path, and
// protected_symlinks' to every link followed on the way to it (refused_on_the_way): in a sticky,
// world-writable directory, a symbolic link is followed, and an existing FIFO or regular file is
// written into, only when it belongs to the writer (the effective uid) or to the directory's
// owner. Anything else is refused, with the reason, before it is opened. No other user can replace
// a link or file that passed that check: the sticky bit keeps the entry theirs or ours.
//
// A FIFO has no reader until someone opens it; opening one waits for a reader at most
// kFifoReaderWaitMs, so a FIFO nobody reads never hangs the program. Writes never raise SIGPIPE
// in the program: a reader that goes away is an error, not the end of the program.
//
// Only system calls and the caller's buffers: the log is opened wherever the first diagnostic is
// written (inside free(), in a signal handler).
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace heapkeeper::alloc {

class DiagnosticLine;

constexpr int kFifoReaderWaitMs = 5000;

// Why a path cannot be written. `reason` (static text) when heapkeeper decided so itself: a
// refusal (then `owner` is the uid owning the link, FIFO or file) or a FIFO without a reader;
// otherwise `error` is the errno of the failing call.
struct OutputProblem {
  const char* reason = nullptr;  // "a symbolic link" (refused), or the whole reason
  const char* step = nullptr;    // what failed, said before the system's reason for `error`
  const char* rule = nullptr;    // the sysctl whose rule refused it, "fs.protected_symlinks"
  bool refused = false;
  uid_t owner = 0;
  int error = 0;
  // A refused link that is not the path's last component but a directory on the way to it
  // (/tmp/reports when the path is /tmp/reports/r.json): its path, said in the refusal.
  char through[256] = {};
};

// Opens the existing `path` for writing (open flags `flags` added to O_WRONLY: O_APPEND, and
// O_CREAT, which creates the missing file a symbolic link leads to; O_NONBLOCK is used for the
// open and cleared after it). A symbolic link is followed as the rule above allows; a block
// device is refused (writing a report over a disk is never what was meant). -1 when `path` does
// not exist (problem.error ENOENT, no reason) or cannot be written.
int open_existing_for_writing(const char* path, int flags, OutputProblem& problem);

// fs.protected_symlinks' rule for every symbolic link followed on the way to `path`'s last
// component, as the kernel applies it to each one it follows (when the sysctl is on): a link in a
// sticky world-writable directory, owned by neither us nor the directory's owner, is refused
// (true, `problem` says which). Links inside the targets of links are followed and checked too.
// The last component itself is the caller's to judge (a link there is followed by the open).
bool refused_on_the_way(const char* path, OutputProblem& problem);

// Opens `path` to append to it, creating it (mode 0644 less the umask) when it does not exist.
int open_for_appending(const char* path, OutputProblem& problem);

// Writes all of `data`, retrying on EINTR; false with errno on failure. SIGPIPE is blocked in
// this thread meanwhile, and the one this write caused is taken back, so the program never sees it.
bool write_fully(int fd, const char* data, size_t length);

// Appends the problem's words to a diagnostic line ("it is a symbolic link owned by uid 1000 in
// a sticky world-writable directory; refused, as fs.protected_symlinks would", or strerror).
void describe_output_problem(DiagnosticLine& line, const OutputProblem& problem);

// The directory holding `path`'s last component ("." for a bare name), into out; false if it
// does not fit.
bool parent_directory(const char* path, char* out, size_t capacity);

}  // namespace heapkeeper::alloc
