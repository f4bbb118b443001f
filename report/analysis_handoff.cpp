// Implementation of the hand-off to the `heapkeeper` binary (see analysis_handoff.h).
#include "report/analysis_handoff.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "allocator/bounded_text.h"

namespace heapkeeper::report {
namespace {

char g_socket_path[sizeof(sockaddr_un::sun_path)] = {};       // the run's service
char g_user_socket_path[sizeof(sockaddr_un::sun_path)] = {};  // the user's service (any process)
char g_binary_path[PATH_MAX] = {};

uint64_t monotonic_ms() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000 + static_cast<uint64_t>(now.tv_nsec) / 1000000;
}

bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == ENOTSOCK) {
      const ssize_t w = ::write(fd, data, size);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      data += w;
      size -= static_cast<size_t>(w);
      continue;
    }
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// How read_answer stopped.
enum class AnswerEnd {
  kWhole,      // `out` holds the whole answer its header announces (asked for with `until_whole`)
  kEndOfFile,  // the other end closed: `out` holds what came, for the parser to judge
  kNotAnswer,  // what came announces no answer's size, or runs past the size it announces
  kFailed,     // timeout or error
};

// Reads into `out` until end of file or, with `until_whole` (a service's answer), until `out`
// holds the whole answer its header announces, waiting at most until `deadline_ms`. The service
// closes the connection once it has sent the answer, but waiting for that as well could cost the
// exiting program a second wake-up on a loaded machine. Reading stops as soon as what comes is
// no answer: a stream without end (a HEAPKEEPER_BINARY that is no heapkeeper writing on and on)
// had filled the program's memory until the timeout, gigabytes a second.
AnswerEnd read_answer(int fd, std::string& out, uint64_t deadline_ms, bool until_whole) {
  // Small: a 64 KiB buffer reached below the stack the exit path had used, a page fault a report.
  char buffer[8192];
  for (;;) {
    if (out.size() >= kRawAnswerHeaderBytes) {
      uint64_t total = 0;
      std::memcpy(&total, out.data() + kRawAnswerTotalAt, sizeof total);
      if (total < kRawAnswerHeaderBytes || total > kRawAnswerMaxBytes || out.size() > total)
        return AnswerEnd::kNotAnswer;
      if (until_whole && out.size() == total) return AnswerEnd::kWhole;
      out.reserve(total);
    }
    const uint64_t now = monotonic_ms();
    if (now >= deadline_ms) return AnswerEnd::kFailed;
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(deadline_ms - now));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return AnswerEnd::kFailed;
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return AnswerEnd::kFailed;
    if (n == 0) return AnswerEnd::kEndOfFile;
    out.append(buffer, static_cast<size_t>(n));
  }
}

// The dump's length (u64) and the dump in one send. Each send wakes the service's worker, which,
// woken by the length alone, reads it and waits again for the dump: a second round of wake-ups on
// the hand-off every short process of a shell loop or a build makes at exit (issue #12).
bool send_with_length(int fd, const std::string& dump) {
  uint64_t length = dump.size();
  iovec parts[2] = {{&length, sizeof length}, {const_cast<char*>(dump.data()), dump.size()}};
  msghdr message{};
  message.msg_iov = parts;
  message.msg_iovlen = 2;
  ssize_t sent = 0;
  do {
    sent = ::sendmsg(fd, &message, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return false;
  auto done = static_cast<size_t>(sent);  // the rest, if the socket took only part of it
  if (done < sizeof length) {
    return write_all(fd, reinterpret_cast<const char*>(&length) + done, sizeof length - done) &&
           write_all(fd, dump.data(), dump.size());
  }
  done -= sizeof length;
  return write_all(fd, dump.data() + done, dump.size() - done);
}

// A service (the run's or the user's): u64 length + dump, then the answer until EOF. The service
// must run as our uid (SO_PEERCRED): the dump tells what the program allocated.
//
// Its socket file must be ours before we connect at all, and the connect and the send are bounded
// by the answer's deadline too: connect() to a socket whose backlog is full (a service stopped, or
// another user's listener that never accepts, planted in a /tmp/heapkeeper-UID that user made
// first) waits until there is room, and had held the program at exit for ever.
bool ask_service(const char* socket_path, const std::string& dump, std::string& reply) {
  if (socket_path[0] == '\0') return false;
  struct stat socket_file {};
  if (::lstat(socket_path, &socket_file) != 0 || !S_ISSOCK(socket_file.st_mode) || socket_file.st_uid != ::getuid())
    return false;
  const uint64_t deadline_ms = monotonic_ms() + kAnswerTimeoutMs;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const timeval send_limit{kAnswerTimeoutMs / 1000, 0};  // a unix connect waits for room as a send does
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_limit, sizeof send_limit);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, socket_path, sizeof(address.sun_path) - 1);
  bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  ucred peer{};
  socklen_t peer_length = sizeof peer;
  ok = ok && ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &peer_length) == 0 && peer.uid == ::getuid();
  ok = ok && send_with_length(fd, dump);
  // Only a whole answer: a service that died, or refused the dump (a library newer than the
  // service's binary), closes early, and the next way (the binary itself) may still answer.
  ok = ok && ::shutdown(fd, SHUT_WR) == 0 && read_answer(fd, reply, deadline_ms, true) == AnswerEnd::kWhole;
  ::close(fd);
  return ok;
}

// Makes `fd` the child's descriptor `target`, kept across exec. dup2 onto its own number does
// nothing, close-on-exec included: when the program has closed its standard input or output, the
// library's memfd and pipe take those numbers, and the binary would start without them.
int give_as(int fd, int target) { return fd == target ? ::fcntl(fd, F_SETFD, 0) : ::dup2(fd, target); }

// The child's side of the raw clone: a copy of one thread of a process whose other threads may
// hold any lock, so only system calls here, and every signal stays blocked (the program's handlers
// must never run in it). An exec would give the child the exit signal SIGCHLD again (the kernel
// resets it on exec), so this child does not exec: it makes a grandchild that does, whose SIGCHLD
// comes here, waits for it and ends with its status. The binary starts with every signal blocked
// and unblocks them itself, once exec has reset the handlers.
//
// Both die with their parent (PR_SET_PDEATHSIG): a program killed while it waits for the answer
// (timeout, Ctrl-C, a supervisor's stop) would otherwise leave them running, this child holding
// a copy of every descriptor the program had (the pipe a shell reads its output from never saw
// its end, a listening socket stayed bound) for as long as the binary took, for ever if it hung;
// nobody would read the answer. For the same reason this child closes its descriptors once the
// binary has its own.
[[noreturn]] void run_binary(int dump_fd, int answer_fd, char* const* argv, char* const* envp, long program) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != program) ::_exit(125);  // the program died before the line above
  const long self = ::syscall(SYS_getpid);
  const long grandchild = ::syscall(SYS_clone, static_cast<long>(SIGCHLD), nullptr, nullptr, nullptr, nullptr);
  if (grandchild == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // kept across exec (the binary is no set-id program)
    if (::getppid() != self) ::_exit(125);
    // The memfd was made before the pipe, so the answer's end is never 0 and survives this order.
    if (give_as(dump_fd, 0) < 0 || give_as(answer_fd, 1) < 0) ::_exit(126);
    ::syscall(SYS_close_range, 3u, ~0u, 0u);  // what the program left open without close-on-exec
    // The system call itself: the library's own execve is the program's wrapper (preload/exec_calls.cpp).
    ::syscall(SYS_execve, argv[0], argv, envp);
    ::_exit(127);
  }
  if (grandchild < 0) ::_exit(125);
  ::syscall(SYS_close_range, 0u, ~0u, 0u);
  int status = 0;
  while (::syscall(SYS_wait4, grandchild, &status, 0, nullptr) < 0 && errno == EINTR) {
  }
  ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

bool ask_binary(const std::string& dump, std::string& reply, std::string& why) {
  if (g_binary_path[0] == '\0' || ::access(g_binary_path, X_OK) != 0) {
    why = std::string("the heapkeeper binary is not available (") +
          (g_binary_path[0] != '\0' ? g_binary_path : "no path") + ")";
    return false;
  }
  // The child's environment: the program's, without LD_PRELOAD (the binary is not to be traced).
  std::vector<char*> envp;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (std::strncmp(*e, "LD_PRELOAD=", 11) != 0) envp.push_back(*e);
  }
  envp.push_back(nullptr);
  char arg0[PATH_MAX];
  std::memcpy(arg0, g_binary_path, sizeof arg0);
  char arg1[] = "symbolize", arg2[] = "--answer", arg3[] = "--serve";
  // A user's service is asked for unless the program would become its parent: a subreaper, or
  // pid 1 of its namespace (a container's entry point), which every orphan in it comes to.
  int subreaper = 0;
  const bool serve = g_user_socket_path[0] != '\0' &&
                     ::prctl(PR_GET_CHILD_SUBREAPER, reinterpret_cast<unsigned long>(&subreaper), 0, 0, 0) == 0 &&
                     subreaper == 0 && ::getpid() != 1;
  char* argv[] = {arg0, arg1, arg2, serve ? arg3 : nullptr, serve ? g_user_socket_path : nullptr, nullptr};

  const int dump_fd = static_cast<int>(::syscall(SYS_memfd_create, "heapkeeper-dump", MFD_CLOEXEC));
  int answer[2] = {-1, -1};
  if (dump_fd < 0 || ::pipe2(answer, O_CLOEXEC) != 0 || !write_all(dump_fd, dump.data(), dump.size()) ||
      ::lseek(dump_fd, 0, SEEK_SET) != 0) {
    why = std::string("could not pass the dump to the heapkeeper binary: ") + std::strerror(errno);
    if (dump_fd >= 0) ::close(dump_fd);
    if (answer[0] >= 0) ::close(answer[0]), ::close(answer[1]);
    return false;
  }
  // Exit signal 0 (no SIGCHLD in the flags): the program is not told, and only a wait with
  // __WCLONE or __WALL, which is ours alone, sees the child. Signals are blocked across the clone
  // so that the child starts with all of them blocked.
  sigset_t all, before;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &before);
  const long program = ::syscall(SYS_getpid);
  const long child = ::syscall(SYS_clone, 0L, nullptr, nullptr, nullptr, nullptr);
  if (child == 0) run_binary(dump_fd, answer[1], argv, envp.data(), program);
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
  ::close(dump_fd);
  ::close(answer[1]);
  if (child < 0) {
    why = std::string("could not start the heapkeeper binary: ") + std::strerror(errno);
    ::close(answer[0]);
    return false;
  }
  const AnswerEnd end = read_answer(answer[0], reply, monotonic_ms() + kAnswerTimeoutMs, false);
  ::close(answer[0]);
  // A binary that hangs, or whose output is no answer, goes (the child's end takes it along).
  if (end != AnswerEnd::kEndOfFile) ::kill(static_cast<pid_t>(child), SIGKILL);
  int status = 0;
  // The system call itself, not waitpid, which the program or another preloaded library may wrap.
  while (::syscall(SYS_wait4, static_cast<pid_t>(child), &status, __WALL, nullptr) < 0 && errno == EINTR) {
  }
  if (end == AnswerEnd::kFailed) {
    why = std::string("the heapkeeper binary ") + g_binary_path + " did not answer in time";
    return false;
  }
  if (end == AnswerEnd::kNotAnswer) {
    why = "the heapkeeper binary's answer is not one (" + std::to_string(reply.size()) + " bytes and more)";
    return false;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    why = std::string("the heapkeeper binary ") + g_binary_path + " failed (status " +
          std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) + ")";
    return false;
  }
  return true;
}

// The user's service: $XDG_RUNTIME_DIR (the user's own, 0700) or, without such a one or when its
// path is too long for a socket's, a directory of ours in /tmp, named
// after the binary's file (device, inode, modification time), so that only the service of this
// very binary is ever asked; none without a binary.
void name_user_service() {
  g_user_socket_path[0] = '\0';
  struct stat binary {};
  if (g_binary_path[0] == '\0' || ::stat(g_binary_path, &binary) != 0) return;
  const unsigned long long identity = (static_cast<unsigned long long>(binary.st_dev) * 0x9e3779b97f4a7c15ull) ^
                                      (static_cast<unsigned long long>(binary.st_ino) << 20) ^
                                      static_cast<unsigned long long>(binary.st_mtim.tv_sec) * 1000000007ull ^
                                      static_cast<unsigned long long>(binary.st_mtim.tv_nsec);
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  // The runtime directory only if the binary will serve there (a directory of ours, 0700): one
  // inherited from another user (`sudo -E`, `su` without -l) or missing had no service ever.
  struct stat directory {};
  if (runtime != nullptr && runtime[0] == '/' && ::lstat(runtime, &directory) == 0 && S_ISDIR(directory.st_mode) &&
      directory.st_uid == ::getuid() && (directory.st_mode & 077) == 0) {
    // Not snprintf: this runs in every traced process (see alloc::BoundedText).
    heapkeeper::alloc::BoundedText path(g_user_socket_path, sizeof g_user_socket_path);
    if (path.text(runtime).text("/heapkeeper-symbolizer.").hex(identity).complete()) return;
  }
  // No runtime directory the binary would serve in, or one whose name leaves no room in a socket's
  // 107 bytes: without this, no process of such a user ever found a service, and each read every
  // module again.
  heapkeeper::alloc::BoundedText path(g_user_socket_path, sizeof g_user_socket_path);
  path.text("/tmp/heapkeeper-").number(::getuid()).text("/symbolizer.").hex(identity);
  if (!path.complete()) g_user_socket_path[0] = '\0';
}

}  // namespace

void locate_analysis_binary() {
  if (const char* socket = std::getenv("HEAPKEEPER_SYMBOLIZER_SOCKET");
      socket != nullptr && std::strlen(socket) < sizeof(g_socket_path))
    std::strcpy(g_socket_path, socket);
  if (const char* binary = std::getenv("HEAPKEEPER_BINARY");
      binary != nullptr && binary[0] == '/' && std::strlen(binary) < sizeof(g_binary_path)) {
    std::strcpy(g_binary_path, binary);
    name_user_service();
    return;
  }
  // Next to this library: <prefix>/lib/libheapkeeper.so -> <prefix>/bin/heapkeeper.
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&locate_analysis_binary), &info) == 0 || info.dli_fname == nullptr) return;
  char library[PATH_MAX];
  if (info.dli_fname[0] == '/') {
    if (std::strlen(info.dli_fname) >= sizeof library) return;
    std::strcpy(library, info.dli_fname);
  } else if (::realpath(info.dli_fname, library) == nullptr) {
    return;
  }
  char* slash = std::strrchr(library, '/');
  if (slash == nullptr) return;
  *slash = '\0';
  constexpr char kRelative[] = "/../bin/heapkeeper";
  if (std::strlen(library) + sizeof kRelative > sizeof g_binary_path) return;
  std::strcpy(g_binary_path, library);
  std::strcat(g_binary_path, kRelative);
  name_user_service();
}

bool analyse_dump(const std::string& dump, RawAnswer& answer, std::string& why) {
  std::string reply;
  if (!ask_service(g_socket_path, dump, reply)) {
    reply.clear();
    if (!ask_service(g_user_socket_path, dump, reply)) {
      reply.clear();
      if (!ask_binary(dump, reply, why)) return false;
    }
  }
  return parse_raw_answer(reply, answer, why);
}

}  // namespace heapkeeper::report
