// Reading a whole small file (/proc/self/cmdline, a suppressions file) inside the traced process.
//
// Not std::ifstream: it opens without O_CLOEXEC, and a descriptor heapkeeper's publisher thread
// holds open while a program thread execs would leak into the new program.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
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

}  // namespace heapkeeper::report
