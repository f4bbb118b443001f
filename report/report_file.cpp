// Implementation of writing the report file (see report_file.h).
#include "report/report_file.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <string>

namespace heapkeeper::report {
namespace {

constexpr int kTemporaryNameAttempts = 16;
constexpr size_t kLongestNameKept = 200;  // of the target's name in its temporary's: NAME_MAX is 255

int fail(alloc::OutputProblem& problem, int error, const char* reason = nullptr) {
  problem = alloc::OutputProblem{};
  problem.error = error;
  problem.reason = reason;
  errno = error;
  return -1;
}

uint64_t mix(uint64_t x) {  // splitmix64's finaliser
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// 12 characters carrying 72 random bits. Should getrandom fail (a kernel without it), the clock
// and the pid stand in: O_EXCL|O_NOFOLLOW keep even a guessed name safe, and randomness only keeps
// other users from occupying the name in advance.
std::string random_name_part() {
  unsigned char bytes[9];
  if (::getrandom(bytes, sizeof(bytes), GRND_NONBLOCK) != static_cast<ssize_t>(sizeof(bytes))) {
    struct timespec now = {};
    ::clock_gettime(CLOCK_REALTIME, &now);
    const uint64_t a = mix(static_cast<uint64_t>(now.tv_nsec) ^ (static_cast<uint64_t>(now.tv_sec) << 30));
    const uint64_t b = mix(a ^ static_cast<uint64_t>(::getpid()) ^ reinterpret_cast<uintptr_t>(&now));
    for (size_t i = 0; i < sizeof(bytes); ++i) bytes[i] = static_cast<unsigned char>((i < 8 ? a : b) >> (8 * (i % 8)));
  }
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string name;
  for (size_t i = 0; i < sizeof(bytes); i += 3) {
    const uint32_t group = (uint32_t{bytes[i]} << 16) | (uint32_t{bytes[i + 1]} << 8) | bytes[i + 2];
    for (int shift = 18; shift >= 0; shift -= 6) name += kAlphabet[(group >> shift) & 63];
  }
  return name;
}

bool same_file(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

// Replaces what is at `path` (nothing, or the regular file `existing` describes) with `text`,
// atomically (see report_file.h).
int replace_atomically(const std::string& path, std::string_view text, const struct stat* existing,
                       alloc::OutputProblem& problem) {
  const size_t slash = path.rfind('/');
  const std::string directory = slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (name.size() > kLongestNameKept) name.resize(kLongestNameKept);
  // Only a report of ours keeps its mode: another user's file in a shared directory must not
  // hand its (perhaps world-writable) mode to the report we put in its place.
  const bool keep_mode = existing != nullptr && existing->st_uid == ::geteuid();
  std::string temporary;
  int fd = -1;
  for (int attempt = 0; attempt < kTemporaryNameAttempts && fd < 0; ++attempt) {
    temporary = directory + name + ".tmp." + random_name_part();
    fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC,
                keep_mode ? 0600 : 0644);
    if (fd < 0 && errno != EEXIST) {
      fail(problem, errno);
      // The file is there, but no new one can be made beside it (/proc, a read-only directory):
      // the system's "No such file or directory" alone would name the wrong file.
      if (existing != nullptr) problem.step = "cannot create the new file beside it that replaces it";
      return -1;
    }
  }
  if (fd < 0) return fail(problem, EEXIST);
  bool ok =
      alloc::write_fully(fd, text.data(), text.size()) && (!keep_mode || ::fchmod(fd, existing->st_mode & 0777) == 0);
  int error = errno;
  if (::close(fd) != 0 && ok) {
    ok = false;
    error = errno;
  }
  if (ok && ::rename(temporary.c_str(), path.c_str()) != 0) {
    ok = false;
    error = errno;
  }
  if (!ok) {
    ::unlink(temporary.c_str());
    return fail(problem, error);
  }
  return 0;
}

// Writes through the open `fd`; 0 or -1 with `problem` set. Closes fd.
int write_and_close(int fd, std::string_view text, alloc::OutputProblem& problem) {
  bool ok = alloc::write_fully(fd, text.data(), text.size());
  int error = errno;
  if (::close(fd) != 0 && ok && errno != EINTR) {
    ok = false;
    error = errno;
  }
  return ok ? 0 : fail(problem, error);
}

}  // namespace

int write_report_text(const char* path, std::string_view text, alloc::OutputProblem& problem) {
  problem = alloc::OutputProblem{};
  if (alloc::refused_on_the_way(path, problem)) {
    errno = EACCES;
    return -1;
  }
  struct stat entry;
  if (::lstat(path, &entry) != 0) {
    if (errno != ENOENT) return fail(problem, errno);
    return replace_atomically(path, text, nullptr, problem);
  }
  if (S_ISDIR(entry.st_mode)) return fail(problem, EISDIR);
  if (S_ISREG(entry.st_mode)) return replace_atomically(path, text, &entry, problem);

  // A stream, or a link: open what the path leads to, and look at it.
  const int fd = alloc::open_existing_for_writing(path, O_CREAT, problem);
  if (fd < 0) {
    errno = problem.error;
    return -1;
  }
  struct stat opened;
  if (::fstat(fd, &opened) != 0) {
    const int error = errno;
    ::close(fd);
    return fail(problem, error);
  }
  if (!S_ISREG(opened.st_mode)) return write_and_close(fd, text, problem);
  // A link to a regular file: that file is replaced, by the name the link resolves to now.
  char resolved[PATH_MAX];
  struct stat at_resolved;
  const bool found =
      ::realpath(path, resolved) != nullptr && ::stat(resolved, &at_resolved) == 0 && same_file(at_resolved, opened);
  ::close(fd);
  if (!found) return fail(problem, ENOENT, "it is a symbolic link whose file has no name to replace");
  return replace_atomically(resolved, text, &at_resolved, problem);
}

}  // namespace heapkeeper::report
