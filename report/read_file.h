// Reading a whole small file (/proc/self/cmdline, a suppressions file) inside the traced process.
//
// Not std::ifstream: it opens without O_CLOEXEC, and a descriptor heapkeeper's publisher thread
// holds open while a program thread execs would leak into the new program.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace heapkeeper::report {

// The file's bytes; empty if it cannot be read. `ok`, when given, says whether it could.
inline std::string read_whole_file(const char* path, bool* ok = nullptr) {
  std::string text;
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (ok != nullptr) *ok = fd >= 0;
  if (fd < 0) return text;
  char buffer[4096];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n < 0 && ok != nullptr) *ok = false;
      break;
    }
    text.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return text;
}

// What kind of file `mode` describes, for a message: "a directory", "a FIFO"...
inline const char* file_kind(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "of an unknown kind";
}

// Appends what `fd` holds to `text` until its end, stopping once more than `limit` bytes are read
// (a stream, or a file that grows meanwhile). Returns "" or why not: strerror, or `too_large`.
inline std::string read_at_most(int fd, size_t limit, const std::string& too_large, std::string& text) {
  constexpr size_t kChunk = 65536;
  for (;;) {
    const size_t used = text.size();
    text.resize(used + kChunk);
    const ssize_t n = read(fd, text.data() + used, kChunk);
    text.resize(used + static_cast<size_t>(n > 0 ? n : 0));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::strerror(errno);
    if (n == 0) return "";
    if (text.size() > limit) return too_large;
  }
}

// A regular file of at most `limit` bytes (a whole number of MiB), whole, into `text`. Returns ""
// on success, else why not, to follow "FILE: " ("it is a directory, not a regular file", "it is
// larger than 4 MiB", strerror). Bounded whatever the path names: it opens without blocking (a
// FIFO with no writer), reads nothing but a regular file (/dev/zero never ends), and never more
// than `limit` + 1 bytes (a file that grows while read).
inline std::string read_regular_file(const char* path, size_t limit, std::string& text) {
  text.clear();
  const int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return std::strerror(errno);
  const std::string too_large = "it is larger than " + std::to_string(limit >> 20) + " MiB";
  std::string problem;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    problem = std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    problem = std::string("it is ") + file_kind(st.st_mode) + ", not a regular file";
  } else if (static_cast<uint64_t>(st.st_size) > limit) {
    problem = too_large;
  }
  if (problem.empty()) problem = read_at_most(fd, limit, too_large, text);
  close(fd);
  if (!problem.empty()) text.clear();
  return problem;
}

}  // namespace heapkeeper::report
