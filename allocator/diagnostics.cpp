// Implementation of the async-signal-safe diagnostic writer (see diagnostics.h).
#include "allocator/diagnostics.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "allocator/config.h"
#include "allocator/errno_kept.h"
#include "allocator/output_file.h"

namespace heapkeeper::alloc {
namespace {

// An open file we write to, and what it was when we opened it: the program may close the number
// or reuse it for a file of its own, and heapkeeper must never write into the program's files.
struct OutputFile {
  std::atomic<int> fd{-1};
  // Atomic: the program's dup2 onto 2 gives the stderr a new identity (note_descriptor_replaced)
  // while another thread may be comparing. A torn pair compares unequal: one line not written.
  std::atomic<dev_t> device{0};
  std::atomic<ino_t> inode{0};
  std::atomic<pid_t> owner{0};  // the process that opened it (a log file named with %p is per process)

  bool still_ours(int descriptor) const {
    struct stat now;
    return ::fstat(descriptor, &now) == 0 && now.st_dev == device.load(std::memory_order_relaxed) &&
           now.st_ino == inode.load(std::memory_order_relaxed);
  }
};

// The program's stderr as it was at start-up: a copy on a high number, and the file's identity,
// kept even when no copy could be made. Without the copy (the program closed it, every descriptor
// say, or the limit left no number for it), fd 2 is written to only while it is still that file:
// a program that closed its descriptors and opened its own files may have a data file on 2.
OutputFile g_stderr_copy;
// Set once start-up recorded that identity: before (the configuration's warnings, read first) fd 2
// is the start-up stderr by definition, and so it is for code that never ran start-up (unit tests).
std::atomic<bool> g_stderr_identity_known{false};
// The start-up stderr is a pipe, FIFO or socket, whose reader may wait for its end: then the copy
// goes when the program moves its stderr elsewhere (note_descriptor_replaced). A terminal or a
// file keeps it, and the reports keep going there.
std::atomic<bool> g_stderr_waits_for_end{false};
// The process started with descriptor 2 closed: it has no stderr, and 2 is the number its next
// open() gets (a daemon's log, a data file), never heapkeeper's to write to.
std::atomic<bool> g_started_without_stderr{false};
OutputFile g_log_file;
std::atomic<bool> g_log_failed{false};

// The lowest free descriptor at or above a high number, out of the way of programs that expect
// theirs to be small (select, fd_set) and below 1024 so the kernel's table stays small; -1 when
// the limit leaves no such number (sandboxes set 16 or 32): a copy there would take the number the
// program's next open expects, so there is none.
int duplicate_high(int fd) {
  constexpr rlim_t kLowestHigh = 64;
  rlimit limit{};
  rlim_t ceiling = 1024;
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < ceiling) ceiling = limit.rlim_cur;
  if (ceiling < kLowestHigh + 16) return -1;
  return ::fcntl(fd, F_DUPFD_CLOEXEC, static_cast<int>(ceiling - 16));
}

void remember(OutputFile& file, int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return;
  }
  file.device.store(st.st_dev, std::memory_order_relaxed);
  file.inode.store(st.st_ino, std::memory_order_relaxed);
  file.owner.store(::getpid(), std::memory_order_relaxed);
  file.fd.store(fd, std::memory_order_release);
}

// The program's stderr as it was at start-up: the copy, or fd 2 while it still holds that file;
// -1 (nothing written) if there was none or it is gone.
int stderr_descriptor() {
  const int copy = g_stderr_copy.fd.load(std::memory_order_acquire);
  if (copy >= 0 && g_stderr_copy.still_ours(copy)) return copy;
  if (g_started_without_stderr.load(std::memory_order_relaxed)) return -1;
  if (!g_stderr_identity_known.load(std::memory_order_acquire)) return STDERR_FILENO;
  return g_stderr_copy.still_ours(STDERR_FILENO) ? STDERR_FILENO : -1;
}

// HEAPKEEPER_LOG_PATH's file for this process, opened on first use; -1 for stderr.
int log_descriptor() {
  const char* pattern = config().log_path;
  if (pattern[0] == '\0' || g_log_failed.load(std::memory_order_relaxed)) return -1;
  const pid_t pid = ::getpid();
  int fd = g_log_file.fd.load(std::memory_order_acquire);
  if (fd >= 0 && g_log_file.owner.load(std::memory_order_relaxed) == pid && g_log_file.still_ours(fd)) return fd;
  char path[sizeof(Config::log_path)];
  int opened = -1;
  OutputProblem problem;
  problem.error = ENAMETOOLONG;
  // A FIFO waits for its reader, a symbolic link or file of another user in /tmp is refused
  // (output_file.h): a log path must neither hang the program nor write where it should not.
  if (expand_pid_pattern(pattern, static_cast<int>(pid), path, sizeof(path)))
    opened = open_for_appending(path, problem);
  if (opened < 0) {
    if (!g_log_failed.exchange(true)) {
      DiagnosticLine line;
      line.text("cannot write HEAPKEEPER_LOG_PATH='").path(pattern).text("' (");
      describe_output_problem(line, problem);
      line.text("); using stderr");
      line.emit();
    }
    return -1;
  }
  const int high = duplicate_high(opened);  // out of the program's low numbers, like stderr's copy
  if (high >= 0) {
    ::close(opened);
    opened = high;
  }
  // A forked child holds its parent's copy: ours to close once replaced (the child reports into
  // its own file). Only the thread whose exchange succeeds closes it, so it is closed once.
  const bool inherited = fd >= 0 && g_log_file.still_ours(fd);
  struct stat st;
  if (::fstat(opened, &st) != 0) {
    ::close(opened);
    return -1;
  }
  // Two threads opening it at once open the same file (same identity): one descriptor is kept.
  g_log_file.device.store(st.st_dev, std::memory_order_relaxed);
  g_log_file.inode.store(st.st_ino, std::memory_order_relaxed);
  g_log_file.owner.store(pid, std::memory_order_relaxed);
  int expected = fd;
  if (g_log_file.fd.compare_exchange_strong(expected, opened, std::memory_order_acq_rel)) {
    if (inherited) ::close(fd);
    return opened;
  }
  ::close(opened);
  return expected;
}

}  // namespace

void initialize_diagnostic_output() {
  const int saved_errno = errno;
  struct stat st;
  // The process whose stderr this is: a vfork child, sharing this memory, has another pid.
  g_stderr_copy.owner.store(::getpid(), std::memory_order_relaxed);
  if (::fstat(STDERR_FILENO, &st) != 0) {
    g_started_without_stderr.store(true, std::memory_order_relaxed);
  } else {
    g_stderr_copy.device.store(st.st_dev, std::memory_order_relaxed);
    g_stderr_copy.inode.store(st.st_ino, std::memory_order_relaxed);
    g_stderr_waits_for_end.store(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode), std::memory_order_relaxed);
    g_stderr_identity_known.store(true, std::memory_order_release);
    const int copy = duplicate_high(STDERR_FILENO);
    if (copy >= 0) remember(g_stderr_copy, copy);
  }
  errno = saved_errno;
}

void diagnostic_output_after_fork_in_child() {
  // A child forked without exec keeps every descriptor of its parent, the copy of stderr
  // included. A daemon (daemon(3), dbus-daemon --fork, a double fork) then puts /dev/null on its
  // 0, 1 and 2 so that whoever reads its parent's output sees the end of it: `x=$(prog 2>&1)`,
  // Python's subprocess.run(capture_output=True), ssh. Our copy would keep that pipe's write end
  // open for the daemon's whole life, and the reader would wait for it. So the child lets it go
  // and writes to fd 2 instead, while fd 2 is still the stderr the process started with: never
  // into a file the child put on that number, and nothing after a daemon pointed it at /dev/null.
  // The price: a forked child that closes fd 2 in its own exit handlers loses its report there.
  const int saved_errno = errno;
  // Only while the number still holds our copy: a program that put a file of its own on it (dup2
  // onto high numbers) keeps that file in the child.
  const int copy = g_stderr_copy.fd.exchange(-1, std::memory_order_acq_rel);
  if (copy >= 0 && g_stderr_copy.still_ours(copy)) ::close(copy);
  // A process of its own: its dup2 onto 2 chooses its stderr (note_descriptor_replaced).
  g_stderr_copy.owner.store(::getpid(), std::memory_order_relaxed);
  errno = saved_errno;
}

void note_descriptor_replaced(int fd) noexcept {
  int copy = g_stderr_copy.fd.load(std::memory_order_acquire);
  if (copy < 0 || (fd != copy && fd != STDERR_FILENO)) return;
  const ErrnoKept errno_kept;
  if (g_stderr_copy.owner.load(std::memory_order_relaxed) != ::getpid()) return;
  if (fd == copy) {
    g_stderr_copy.fd.compare_exchange_strong(copy, -1, std::memory_order_acq_rel);  // dup2 closed it
  } else if (g_stderr_waits_for_end.load(std::memory_order_relaxed) && !g_stderr_copy.still_ours(STDERR_FILENO) &&
             g_stderr_copy.fd.compare_exchange_strong(copy, -1, std::memory_order_acq_rel)) {
    ::close(copy);
  }
}

void write_stderr(const char* data, size_t length) {
  const int saved_errno = errno;  // diagnostics must never change what the program sees
  const int log = log_descriptor();
  const int fd = log >= 0 ? log : stderr_descriptor();
  if (fd >= 0 && !write_fully(fd, data, length) && log >= 0) {  // never SIGPIPE for a closed reader
    // A log that takes nothing (/dev/full, a full disk, a reader gone) lost the leak report
    // without a word: from now on stderr, as for a log that cannot be opened, said once.
    OutputProblem problem;
    problem.step = "writing to it failed";
    problem.error = errno;
    if (!g_log_failed.exchange(true)) {
      DiagnosticLine line;
      line.text("cannot write HEAPKEEPER_LOG_PATH='").path(config().log_path).text("' (");
      describe_output_problem(line, problem);
      line.text("); using stderr");
      line.emit();
    }
    const int fallback = stderr_descriptor();
    if (fallback >= 0) write_fully(fallback, data, length);
  }
  errno = saved_errno;
}

DiagnosticLine::DiagnosticLine() {
  text("heapkeeper[");
  number(static_cast<uint64_t>(::getpid()));
  text("]: ");
}

DiagnosticLine& DiagnosticLine::text(std::string_view s) {
  line_.text(s);
  return *this;
}

DiagnosticLine& DiagnosticLine::number(uint64_t value) {
  line_.number(value);
  return *this;
}

DiagnosticLine& DiagnosticLine::signed_number(int64_t value) {
  if (value < 0) {
    text("-");
    return number(static_cast<uint64_t>(-(value + 1)) + 1);
  }
  return number(static_cast<uint64_t>(value));
}

DiagnosticLine& DiagnosticLine::hex(uint64_t value) {
  line_.text("0x").hex(value);
  return *this;
}

DiagnosticLine& DiagnosticLine::bytes(uint64_t value) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  size_t unit = 0;
  uint64_t whole = value, tenths = 0;
  while (whole >= 1024 && unit + 1 < sizeof(kUnits) / sizeof(kUnits[0])) {
    tenths = (whole % 1024) * 10 / 1024;
    whole /= 1024;
    ++unit;
  }
  number(whole);
  if (unit > 0) text(".").number(tenths);
  return text(" ").text(kUnits[unit]);
}

DiagnosticLine& DiagnosticLine::escaped(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    char piece[4] = {'\\', static_cast<char>(c), 0, 0};
    size_t length = 2;
    if (c == '\n' || c == '\t') {
      piece[1] = c == '\n' ? 'n' : 't';
    } else if (c < 0x20 || c >= 0x7f) {
      piece[1] = 'x';
      piece[2] = kHex[c >> 4];
      piece[3] = kHex[c & 15];
      length = 4;
    } else if (c != '\\') {
      piece[0] = static_cast<char>(c);
      length = 1;
    }
    line_.text(std::string_view(piece, length));
  }
  return *this;
}

DiagnosticLine& DiagnosticLine::path(std::string_view name) {
  // A quarter of the line for the start of the name (the directories a reader recognises), a
  // little more for its end (the file itself), whatever PATH_MAX allows.
  constexpr size_t kHead = kCapacity / 4, kTail = kCapacity / 3;
  if (name.size() <= kHead + kTail) return escaped(name);
  return escaped(name.substr(0, kHead)).text("...").escaped(name.substr(name.size() - kTail));
}

void DiagnosticLine::emit() {
  const size_t length = line_.size();
  buffer_[length] = '\n';
  write_stderr(buffer_, length + 1);
  line_ = BoundedText(buffer_, kCapacity - 1);
}

}  // namespace heapkeeper::alloc
