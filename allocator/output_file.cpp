// Implementation of safe opening and writing of output files (see output_file.h).
#include "allocator/output_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "allocator/diagnostics.h"

namespace heapkeeper::alloc {
namespace {

constexpr long kPipeFilesystemMagic = 0x50495045;  // PIPEFS_MAGIC: an anonymous pipe, not a named FIFO
constexpr long kProcFilesystemMagic = 0x9fa0;      // PROC_SUPER_MAGIC
constexpr int kFifoPollMs = 20;
constexpr int kOpenAttempts = 4;  // a path that changes between our look and our open is looked at again

// The kernel's signal set is 64 bits wide; glibc's sigset_t is larger and starts with it.
constexpr long kKernelSigsetBytes = 8;

OutputProblem failure(int error) {
  OutputProblem problem;
  problem.error = error;
  return problem;
}

// fs.protected_symlinks' rule, applied to `entry` (the lstat of `path`): whether an entry of that
// kind, owned by someone who is neither us nor the directory's owner, sits in a sticky,
// world-writable directory.
bool refused_by_sticky_rule(const char* path, const struct stat& entry, OutputProblem& problem) {
  if (entry.st_uid == ::geteuid()) return false;
  char directory[4096];
  struct stat parent;
  if (!parent_directory(path, directory, sizeof(directory)) || ::stat(directory, &parent) != 0) return false;
  if ((parent.st_mode & S_ISVTX) == 0 || (parent.st_mode & S_IWOTH) == 0 || entry.st_uid == parent.st_uid) return false;
  problem = OutputProblem{};
  problem.refused = true;
  problem.owner = entry.st_uid;
  if (S_ISLNK(entry.st_mode)) {
    problem.reason = "a symbolic link";
    problem.rule = "fs.protected_symlinks";
  } else if (S_ISFIFO(entry.st_mode)) {
    problem.reason = "a FIFO";
    problem.rule = "fs.protected_fifos";
  } else if (S_ISREG(entry.st_mode)) {
    problem.reason = "a file";
    problem.rule = "fs.protected_regular";
  } else {
    return false;  // devices are made by root, sockets cannot be opened
  }
  return true;
}

void sleep_milliseconds(long milliseconds) {
  // The system call, not nanosleep(): libheapkeeper interposes that one for the program's threads.
  struct timespec pause = {milliseconds / 1000, (milliseconds % 1000) * 1000000};
  ::syscall(SYS_nanosleep, &pause, nullptr);
}

// Whether `path` leads to a named FIFO (a reader may still come), not an anonymous pipe reached
// through /proc/self/fd (/dev/stdout): no one can open that one's other end any more.
bool leads_to_named_fifo(const char* path) {
  struct stat target;
  if (::stat(path, &target) != 0 || !S_ISFIFO(target.st_mode)) return false;
  struct statfs filesystem;
  return ::statfs(path, &filesystem) != 0 || filesystem.f_type != kPipeFilesystemMagic;
}

// Whether following `path` passes through a symbolic link that lives in /proc: /dev/stdout,
// /dev/fd/N, /proc/self/fd/N. Such a link leads to whatever the descriptor holds at that moment,
// and a program that closed fd 1 may have it reused for any file, heapkeeper's own symbolizer
// opening the program's libc.so.6 included. One path buffer, and directory descriptors for the
// rest: the log may be opened on a small signal stack.
bool leads_through_proc(const char* path) {
  char link[4096];
  const size_t length = std::strlen(path);
  if (length >= sizeof(link)) return true;  // cannot tell: assume the worst
  std::memcpy(link, path, length + 1);
  int directory = -1;  // the directory of `link` when it is relative to one; AT_FDCWD at first
  bool through_proc = true;
  for (int hop = 0; hop < 40; ++hop) {
    // Split `link` into its directory and last component, and move into that directory.
    char* slash = std::strrchr(link, '/');
    const char* name = link;
    int next = -1;
    if (slash != nullptr) {
      *slash = '\0';
      next =
          ::openat(directory >= 0 ? directory : AT_FDCWD, slash == link ? "/" : link, O_PATH | O_DIRECTORY | O_CLOEXEC);
      name = slash + 1;
    } else {
      next = ::openat(directory >= 0 ? directory : AT_FDCWD, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
    if (directory >= 0) ::close(directory);
    directory = next;
    if (directory < 0) break;
    struct stat entry;
    if (::fstatat(directory, name, &entry, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISLNK(entry.st_mode)) {
      through_proc = false;  // the end of the chain, and no link in /proc on the way
      break;
    }
    struct statfs filesystem;
    if (::fstatfs(directory, &filesystem) == 0 && filesystem.f_type == kProcFilesystemMagic) break;
    char last[256];  // NAME_MAX + 1: the link's own name, out of the buffer its target replaces
    const size_t name_length = std::strlen(name);
    if (name_length >= sizeof(last)) break;
    std::memcpy(last, name, name_length + 1);
    const ssize_t n = ::readlinkat(directory, last, link, sizeof(link) - 1);
    if (n <= 0) break;
    link[n] = '\0';
  }
  if (directory >= 0) ::close(directory);
  return through_proc;
}

// open() for writing, waiting for the reader of a named FIFO at most kFifoReaderWaitMs.
int open_waiting_for_reader(const char* path, int flags, OutputProblem& problem) {
  int fd = ::open(path, flags, 0644);
  if (fd >= 0 || errno != ENXIO || !leads_to_named_fifo(path)) {
    if (fd < 0) problem = failure(errno);
    return fd;
  }
  for (int waited = 0; waited < kFifoReaderWaitMs; waited += kFifoPollMs) {
    sleep_milliseconds(kFifoPollMs);
    fd = ::open(path, flags, 0644);
    if (fd >= 0 || errno != ENXIO) break;
  }
  if (fd < 0) {
    problem = failure(errno);
    if (errno == ENXIO) problem.reason = "it is a FIFO that no reader opened within 5 s";
  }
  return fd;
}

}  // namespace

bool refused_on_the_way(const char* path, OutputProblem& problem) {
  // One path buffer and directory descriptors, as leads_through_proc: the log may be opened on a
  // small signal stack. What is left to walk sits at the end of `rest` (from `at`); a link's
  // target is read into the free space in front of it and moved next to it.
  char rest[4096];
  const size_t path_length = std::strlen(path);
  if (path_length + 1 > sizeof(rest)) return false;  // the open will say the path is too long
  size_t at = sizeof(rest) - path_length - 1;
  std::memcpy(rest + at, path, path_length + 1);
  // Bytes at the end of `rest` still the original path's: its last component is the caller's to
  // judge (a link there is followed all the same, and what it leads through is checked).
  size_t original_left = path_length;
  int directory = ::open(path[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  bool refused = false;
  for (int links = 0; directory >= 0;) {
    while (rest[at] == '/') ++at;
    if (rest[at] == '\0') break;
    size_t end = at;
    while (rest[end] != '\0' && rest[end] != '/') ++end;
    size_t after = end;
    while (rest[after] == '/') ++after;
    const bool last = rest[after] == '\0';
    const bool callers = last && original_left >= sizeof(rest) - 1 - at;
    char name[256];
    const size_t name_length = end - at;
    if (name_length >= sizeof(name)) break;
    std::memcpy(name, rest + at, name_length);
    name[name_length] = '\0';
    at = after;
    if (original_left > sizeof(rest) - 1 - at) original_left = sizeof(rest) - 1 - at;
    struct stat entry;
    if (std::strcmp(name, ".") == 0 || ::fstatat(directory, name, &entry, AT_SYMLINK_NOFOLLOW) != 0) {
      if (std::strcmp(name, ".") == 0) continue;
      break;  // nothing there to follow: the open says what is missing
    }
    if (!S_ISLNK(entry.st_mode)) {
      if (last || !S_ISDIR(entry.st_mode)) break;
      const int next = ::openat(directory, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      ::close(directory);
      directory = next;
      continue;
    }
    // fs.protected_symlinks' rule, with the directory holding the link as its parent.
    struct stat parent;
    if (!callers && entry.st_uid != ::geteuid() && ::fstat(directory, &parent) == 0 &&
        (parent.st_mode & S_ISVTX) != 0 && (parent.st_mode & S_IWOTH) != 0 && entry.st_uid != parent.st_uid) {
      problem = OutputProblem{};
      problem.refused = true;
      problem.owner = entry.st_uid;
      problem.reason = "a symbolic link";
      problem.rule = "fs.protected_symlinks";
      std::memcpy(problem.through, name, name_length + 1);
      refused = true;
      break;
    }
    if (++links > 40 || at < 2) break;  // ELOOP, or no room: the open says so
    const ssize_t n = ::readlinkat(directory, name, rest, at - 1);
    if (n <= 0 || static_cast<size_t>(n) >= at - 1) break;
    const bool tail = rest[at] != '\0';
    if (tail) rest[at - 1] = '/';
    const size_t start = at - (tail ? 1 : 0) - static_cast<size_t>(n);
    std::memmove(rest + start, rest, static_cast<size_t>(n));
    if (!tail) rest[at] = '\0';
    at = start;
    if (rest[at] == '/') {
      ::close(directory);
      directory = ::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
  }
  if (directory >= 0) ::close(directory);
  return refused;
}

bool parent_directory(const char* path, char* out, size_t capacity) {
  size_t length = std::strlen(path);
  while (length > 1 && path[length - 1] == '/') --length;  // "dir/name/" names "dir/name"
  size_t slash = length;
  while (slash > 0 && path[slash - 1] != '/') --slash;
  if (slash == 0) {  // a bare name: the current directory
    if (capacity < 2) return false;
    out[0] = '.';
    out[1] = '\0';
    return true;
  }
  size_t end = slash - 1;
  while (end > 0 && path[end - 1] == '/') --end;  // "a//b": "a"
  if (end == 0) end = 1;                          // "/b": "/"
  if (end + 1 > capacity) return false;
  std::memcpy(out, path, end);
  out[end] = '\0';
  return true;
}

int open_existing_for_writing(const char* path, int flags, OutputProblem& problem) {
  for (int attempt = 0; attempt < kOpenAttempts; ++attempt) {
    struct stat entry;
    if (::lstat(path, &entry) != 0) {
      problem = failure(errno);
      return -1;
    }
    if (refused_by_sticky_rule(path, entry, problem)) return -1;
    const bool link = S_ISLNK(entry.st_mode);
    // Not following a link we did not look at: a file that became a link since is seen again.
    // O_CREAT only ever creates the file a link leads to; the path itself exists.
    const int open_flags =
        O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | (link ? flags : (flags & ~O_CREAT) | O_NOFOLLOW);
    const int fd = open_waiting_for_reader(path, open_flags, problem);
    if (fd < 0) {
      if (!link && problem.reason == nullptr && (problem.error == ELOOP || problem.error == ENOENT)) continue;
      if (link && problem.reason == nullptr && problem.error == ENOENT)
        problem.reason = (flags & O_CREAT) != 0 ? "it is a symbolic link into a directory that does not exist"
                                                : "it is a symbolic link to nothing";
      return -1;
    }
    struct stat opened;
    if (::fstat(fd, &opened) != 0) {
      problem = failure(errno);
      ::close(fd);
      return -1;
    }
    if (!link && (opened.st_dev != entry.st_dev || opened.st_ino != entry.st_ino)) {
      ::close(fd);  // replaced between the look and the open: look again
      continue;
    }
    if (S_ISBLK(opened.st_mode)) {
      ::close(fd);
      problem = failure(EINVAL);
      problem.reason = "it is a block device";
      return -1;
    }
    if (link && S_ISREG(opened.st_mode) && leads_through_proc(path)) {
      ::close(fd);
      problem = failure(EINVAL);
      problem.reason =
          "it leads through /proc to a regular file, which a descriptor the program closed may hold by now: "
          "only a terminal, pipe, FIFO or device is written through /proc";
      return -1;
    }
    const int status = ::fcntl(fd, F_GETFL);
    if (status != -1) ::fcntl(fd, F_SETFL, status & ~O_NONBLOCK);  // the writes may wait for a slow reader
    return fd;
  }
  problem = failure(EAGAIN);
  problem.reason = "it kept changing while it was opened";
  return -1;
}

int open_for_appending(const char* path, OutputProblem& problem) {
  problem = OutputProblem{};
  if (refused_on_the_way(path, problem)) return -1;
  for (int attempt = 0; attempt < kOpenAttempts; ++attempt) {
    // A link to nothing yet is followed and its file created, as open(O_CREAT) would: the link
    // passed the rule, so its owner chose where it leads.
    int fd = open_existing_for_writing(path, O_APPEND | O_CREAT, problem);
    if (fd >= 0 || problem.error != ENOENT || problem.reason != nullptr) return fd;
    fd = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0644);
    if (fd >= 0) return fd;
    problem = failure(errno);
    if (errno != EEXIST) return -1;  // EEXIST: made by someone else meanwhile; look at it
  }
  return -1;
}

bool write_fully(int fd, const char* data, size_t length) {
  sigset_t pipe_signal, previous, pending;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  sigemptyset(&pending);
  // System calls, not pthread_sigmask() or sigtimedwait(): libheapkeeper interposes those.
  const bool blocked = ::syscall(SYS_rt_sigprocmask, SIG_BLOCK, &pipe_signal, &previous, kKernelSigsetBytes) == 0;
  const bool already_pending =
      ::syscall(SYS_rt_sigpending, &pending, kKernelSigsetBytes) == 0 && sigismember(&pending, SIGPIPE) == 1;
  bool ok = true;
  while (length > 0) {
    const ssize_t written = ::write(fd, data, length);
    if (written < 0) {
      if (errno == EINTR) continue;
      ok = false;
      break;
    }
    data += written;
    length -= static_cast<size_t>(written);
  }
  const int saved = errno;
  if (blocked) {
    if (!ok && saved == EPIPE && !already_pending) {
      const struct timespec now = {0, 0};
      ::syscall(SYS_rt_sigtimedwait, &pipe_signal, nullptr, &now, kKernelSigsetBytes);
    }
    ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &previous, nullptr, kKernelSigsetBytes);
  }
  errno = saved;
  return ok;
}

void describe_output_problem(DiagnosticLine& line, const OutputProblem& problem) {
  if (problem.refused) {
    if (problem.through[0] != '\0')
      line.text("refused: it leads through \"").text(problem.through).text("\", which is ");
    line.text(problem.through[0] != '\0' ? "" : "refused: it is ")
        .text(problem.reason)
        .text(" owned by uid ")
        .number(problem.owner)
        .text(" in a sticky world-writable directory, and neither uid ")
        .number(::geteuid())
        .text(" nor the directory's owner (as ")
        .text(problem.rule)
        .text(" would refuse)");
  } else if (problem.reason != nullptr) {
    line.text(problem.reason);
  } else {
    if (problem.step != nullptr) line.text(problem.step).text(": ");
    line.text(std::strerror(problem.error));
  }
}

}  // namespace heapkeeper::alloc
