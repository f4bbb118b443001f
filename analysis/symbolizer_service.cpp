// Implementation of the run's symbolizer service (see symbolizer_service.h).
#include "analysis/symbolizer_service.h"

#include <elfutils/libdwelf.h>
#include <fcntl.h>
#include <gelf.h>
#include <link.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sys/types.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string_view>
#include <system_error>
#include <thread>

#include "analysis/hex_text.h"
#include "analysis/module_symbolizer.h"
#include "analysis/report_renderer.h"
#include "report/raw_dump.h"

namespace heapkeeper::analysis {
namespace {

constexpr uint64_t kMaxDumpBytes = uint64_t{1} << 30;
constexpr int kClientTimeoutSeconds = 60;

uint64_t monotonic_ms() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000 + static_cast<uint64_t>(now.tv_nsec) / 1000000;
}

struct Service {
  std::mutex mutex;  // the symbolizer and its caches, one dump at a time
  std::unique_ptr<ModuleSymbolizer> symbolizer = std::make_unique<ModuleSymbolizer>();
  int listener = -1;
  std::atomic<int> in_flight{0};
  // Workers waiting in accept() on the listener, and when a client last came or went. Workers
  // stay once made: a thread made for each client cost every short process of a shell loop or a
  // build the thread's creation, start and teardown on its round trip, and a client handed from an
  // accepting thread to a worker waited for a second wake-up. A worker that takes a client makes
  // another only when none is left waiting, so there are never more than the service's peak of
  // clients at once.
  std::atomic<int> waiting_workers{0};
  std::atomic<uint64_t> last_activity_ms{0};
};

bool read_exactly(int fd, char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::read(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

void answer_client(Service& service, int fd) {
  ucred peer{};
  socklen_t length = sizeof peer;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0 || peer.uid != ::getuid()) return;
  const timeval timeout{kClientTimeoutSeconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  uint64_t size = 0;
  if (!read_exactly(fd, reinterpret_cast<char*>(&size), sizeof size) || size > kMaxDumpBytes) return;
  std::string dump(size, '\0');
  if (!read_exactly(fd, dump.data(), dump.size())) return;
  report::RawReport parsed;
  std::string error;
  if (!report::parse_raw_dump(dump, parsed, error)) {
    std::fprintf(stderr, "heapkeeper: symbolizer service: pid %d: %s\n", static_cast<int>(peer.pid), error.c_str());
    return;  // the client sees no answer and says so
  }
  std::string reply;
  {
    std::lock_guard<std::mutex> lock(service.mutex);
    reply = report::serialize_raw_answer(render_answer(parsed, *service.symbolizer));
  }
  write_all(fd, reply.data(), reply.size());
}

// A worker: takes the next client from the listener and answers it (the kernel wakes one waiting
// accept() a connection), until the listener is shut down as the service ends. A client taken is
// counted in flight before the worker stops counting as waiting, so that once no worker waits,
// every client ever taken is in in_flight.
void work(Service* service) {
  for (;;) {
    const int client = ::accept4(service->listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      if (errno == EINVAL) break;  // shut down: the service is ending
      // EINTR, a connection reset before it was taken, or out of descriptors for a moment.
      if (errno != EINTR && errno != ECONNABORTED) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    ++service->in_flight;
    --service->waiting_workers;
    service->last_activity_ms = monotonic_ms();
    if (service->waiting_workers.load() == 0) {
      ++service->waiting_workers;
      try {
        std::thread(work, service).detach();
      } catch (const std::system_error&) {
        // Out of threads (RLIMIT_NPROC, a pids cgroup): the clients wait in the backlog for this
        // worker, rather than the service ending in std::terminate with every answer in flight.
        --service->waiting_workers;
      }
    }
    answer_client(*service, client);
    ::close(client);
    service->last_activity_ms = monotonic_ms();
    ++service->waiting_workers;
    --service->in_flight;
  }
  --service->waiting_workers;
}

// When the service ends: the run's program has exited (its pidfd is readable; without pidfd_open,
// kill(pid, 0) fails) or, for a user's service, nobody came for kUserIdleMs.
struct Lifetime {
  int pidfd = -1;
  pid_t watched = 0;  // 0: a user's service, ended by idleness
};

constexpr int kUserIdleMs = 2000;

// Waits until the service is to end: the run's program has exited, or (a user's service) nobody
// came for kUserIdleMs.
void wait_for_end(const Lifetime& life, const Service& service) {
  if (life.watched != 0) {
    for (;;) {
      pollfd watched{life.pidfd, POLLIN, 0};
      const int ready = ::poll(&watched, life.pidfd >= 0 ? 1 : 0, life.pidfd >= 0 ? -1 : 1000);
      if (ready < 0 && errno != EINTR && errno != EAGAIN) return;
      if (life.pidfd >= 0 && ready > 0 && (watched.revents & POLLIN) != 0) return;
      if (life.pidfd < 0 && ::kill(life.watched, 0) != 0 && errno == ESRCH) return;
    }
  }
  for (;;) {
    const uint64_t quiet_since = service.last_activity_ms.load();
    const uint64_t now = monotonic_ms();
    if (service.in_flight.load() == 0 && now >= quiet_since + uint64_t{kUserIdleMs}) return;
    const uint64_t wait = service.in_flight.load() > 0 || now >= quiet_since + uint64_t{kUserIdleMs}
                              ? kUserIdleMs
                              : quiet_since + uint64_t{kUserIdleMs} - now;
    std::this_thread::sleep_for(std::chrono::milliseconds(wait));
  }
}

void detach_from_terminal() {
  // Nothing of the terminal is held but stderr, and that only while tests count the modules read:
  // a pipe reading the program's output must see its end when the program ends.
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    ::dup2(null, 0);
    ::dup2(null, 1);
    const char* log = std::getenv("HEAPKEEPER_SYMBOLIZER_LOG");
    // Said while stderr is still the terminal's: a value neither 0 nor 1 is taken for 0.
    if (log != nullptr && std::strcmp(log, "0") != 0 && std::strcmp(log, "1") != 0)
      std::fputs("heapkeeper: invalid HEAPKEEPER_SYMBOLIZER_LOG (expected 0 or 1); using the default 0\n", stderr);
    if (log == nullptr || std::strcmp(log, "1") != 0) ::dup2(null, 2);
    ::close(null);
  }
  // Nor its directory: the program's, which a service that stays would keep busy (a mount could
  // not be unmounted). Every path the service opens is absolute; a failure leaves it where it was.
  [[maybe_unused]] const int moved = ::chdir("/");
  ::signal(SIGPIPE, SIG_IGN);
}

// The C library this binary runs with, and its build-id in hex, or empty strings: almost every
// report with a stack names it (a main thread's stacks start in __libc_start_call_main), and the
// traced processes of this machine run the same one.
void own_c_library(std::string& path, std::string& build_id) {
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) -> int {
        const char* name = info->dlpi_name;
        const char* slash = name != nullptr ? std::strrchr(name, '/') : nullptr;
        if (slash == nullptr || std::strncmp(slash + 1, "libc.so.", 8) != 0) return 0;
        *static_cast<std::string*>(data) = name;
        return 1;
      },
      &path);
  build_id.clear();
  if (path.empty()) return;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  elf_version(EV_CURRENT);
  if (Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr)) {
    const void* bits = nullptr;
    const ssize_t length = dwelf_elf_gnu_build_id(elf, &bits);
    if (length > 0) build_id = hex_text(std::string_view(static_cast<const char*>(bits), static_cast<size_t>(length)));
    elf_end(elf);
  }
  ::close(fd);
}

// Serves until the lifetime ends, then removes `socket_path` (if it is still the socket bound
// here: a later service may have replaced it) and `directory` (if any), and exits.
// Removes the file at `path` if it is still the one `seen` describes (a dead service's socket, or
// no socket of ours): another binary may have put its own there since.
void remove_if_unchanged(const std::string& path, const struct stat& seen) {
  struct stat now {};
  if (::lstat(path.c_str(), &now) == 0 && now.st_ino == seen.st_ino && now.st_dev == seen.st_dev)
    ::unlink(path.c_str());
}

// `bound` is the socket file as bind() made it, taken at once: a service that replaced it since
// owns the name.
[[noreturn]] void serve(int listener, const struct stat& bound, const Lifetime& life, const std::string& directory,
                        const std::string& socket_path, std::unique_ptr<ModuleSymbolizer> symbolizer = nullptr) {
  // Every client's dump, answer and JSON tree are made and freed in turn: glibc gave the freed top
  // of each worker's arena back to the kernel after every answer (its trim threshold, 128 KiB), and
  // the next client faulted it in again, five page faults an answer. Kept up to a few MiB; dumps
  // larger than the mmap threshold still come and go as mappings of their own.
  ::mallopt(M_MMAP_THRESHOLD, 4 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 16 << 20);
  auto* service = new Service();  // lives until _exit: detached threads may still hold it
  if (symbolizer != nullptr) service->symbolizer = std::move(symbolizer);
  service->listener = listener;
  service->last_activity_ms = monotonic_ms();
  ++service->waiting_workers;
  try {
    std::thread(work, service).detach();
  } catch (const std::system_error&) {
    // No worker: no service. The name goes, so the processes start the binary at once.
    remove_if_unchanged(socket_path, bound);
    if (!directory.empty()) ::rmdir(directory.c_str());
    ::_exit(0);
  }
  // The C library's symbols and DWARF are read now, while the first clients are answered, rather
  // than by the first report that names it, which would wait for them (a shell loop's last
  // report, its shell's, waited 60 ms for libc6-dbg's sections to be inflated).
  std::string libc_path, libc_build_id;
  own_c_library(libc_path, libc_build_id);
  bool prepare = false;
  {
    std::lock_guard<std::mutex> lock(service->mutex);
    prepare = service->symbolizer->start_preparing(libc_build_id);
  }
  if (prepare) {
    try {
      std::thread([service, libc_path] { service->symbolizer->prepare(libc_path); }).detach();
    } catch (const std::system_error&) {
      service->symbolizer->prepare(libc_path);  // here, then: a claimed preparation must end
    }
  }
  wait_for_end(life, *service);
  remove_if_unchanged(socket_path, bound);
  if (!directory.empty()) ::rmdir(directory.c_str());
  // No client is taken from now on (waiting workers leave accept() with EINVAL; one still in the
  // backlog sees its connection reset and starts the binary itself). A client whose program has
  // exited cannot be waiting; others (descendants that outlived it) get up to their timeout.
  ::shutdown(listener, SHUT_RDWR);
  for (int i = 0;
       i < kClientTimeoutSeconds * 100 && (service->in_flight.load() > 0 || service->waiting_workers.load() > 0); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (const char* log = std::getenv("HEAPKEEPER_SYMBOLIZER_LOG"); log != nullptr && std::strcmp(log, "1") == 0)
    std::fprintf(stderr, "heapkeeper: symbolizer: %llu module files read\n",
                 static_cast<unsigned long long>(service->symbolizer->modules_read()));
  ::_exit(0);
}

// `fd`, or a close-on-exec copy of it numbered 3 or more (the original closed): a service points
// its standard descriptors at /dev/null as it detaches, which would replace a listener or pidfd
// made while the caller had one of them closed (`heapkeeper run <&-`, or the binary, which has
// closed its stdin and stdout before it starts the user's service). -1 stays -1.
int above_standard_descriptors(int fd) {
  if (fd < 0 || fd > 2) return fd;
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  ::close(fd);
  return moved;
}

// A socket bound at `address` and listening, above the standard descriptors; -1 if any step fails.
int listening_at(const sockaddr_un& address) {
  const int listener = above_standard_descriptors(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (listener < 0) return -1;
  if (::bind(listener, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(listener, 128) != 0) {
    const int error = errno;
    ::close(listener);
    errno = error;
    return -1;
  }
  return listener;
}

bool fill_address(const std::string& path, sockaddr_un& address) {
  address = sockaddr_un{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) return false;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return true;
}

// Whether a service of our uid answers at `path`. Not a socket file of ours, or one whose backlog
// is full (a stopped service: a blocking connect would wait for it as long as it is stopped, and
// the program that started this binary with it), is nobody: it is replaced.
bool someone_serves(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) return false;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  struct stat socket_file {};
  if (::lstat(path.c_str(), &socket_file) != 0 || !S_ISSOCK(socket_file.st_mode) || socket_file.st_uid != ::getuid())
    return false;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return false;
  bool ours = false;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) {
    ucred peer{};
    socklen_t length = sizeof peer;
    ours = ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) == 0 && peer.uid == ::getuid();
  }
  ::close(fd);
  return ours;
}

}  // namespace

std::string start_symbolizer_service(std::string& error) {
  // Made orphan, the service goes to the nearest subreaper or the namespace's pid 1: if that is
  // this process, it would be the program's child, seen by its wait(-1), and one that ends only
  // after the program: a program reaping all its children (`while (wait(NULL) > 0)`) as a
  // container's entry point waited for ever. No run's service then: each process starts the binary.
  int subreaper = 0;
  if (::getpid() == 1 ||
      (::prctl(PR_GET_CHILD_SUBREAPER, reinterpret_cast<unsigned long>(&subreaper), 0, 0, 0) == 0 && subreaper != 0)) {
    error = "the service would be the program's child (pid 1 of its namespace, or a subreaper)";
    return {};
  }
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  // /tmp also when the runtime directory's path leaves no room for the socket's name (at most 107
  // bytes): the run would have had no service at all, and every process read every module again.
  constexpr size_t kRoom = sizeof(sockaddr_un::sun_path) - sizeof("/heapkeeper-run.XXXXXX/symbolizer");
  std::string base =
      runtime != nullptr && runtime[0] == '/' && std::strlen(runtime) <= kRoom && ::access(runtime, W_OK | X_OK) == 0
          ? runtime
          : "/tmp";
  std::string directory = base + "/heapkeeper-run.XXXXXX";
  if (::mkdtemp(directory.data()) == nullptr) {
    error = "cannot make a directory in " + base + ": " + std::strerror(errno);
    return {};
  }
  std::string socket_path = directory + "/symbolizer";
  sockaddr_un address{};
  if (!fill_address(socket_path, address)) {
    ::rmdir(directory.c_str());
    error = "socket path too long: " + socket_path;
    return {};
  }
  const int listener = listening_at(address);
  if (listener < 0) {
    error = "cannot listen on " + socket_path + ": " + std::strerror(errno);
    ::rmdir(directory.c_str());
    return {};
  }
  struct stat bound {};
  ::stat(socket_path.c_str(), &bound);
  Lifetime life;
  life.watched = ::getpid();
  // Close-on-exec by definition.
  life.pidfd = above_standard_descriptors(static_cast<int>(::syscall(SYS_pidfd_open, life.watched, 0)));
  std::fflush(nullptr);
  const pid_t child = ::fork();
  if (child == 0) {
    // The intermediate child exits at once: the service is re-parented, never the program's child.
    if (::fork() == 0) {
      // A session of its own, as the user's service has: the SIGINT of a Ctrl-C or the SIGTERM
      // `timeout` sends to the run's process group would kill it before it removes its socket
      // and directory; it ends on its own once the program it watches has ended.
      ::setsid();
      detach_from_terminal();
      serve(listener, bound, life, directory, socket_path);
    }
    ::_exit(0);
  }
  if (life.pidfd >= 0) ::close(life.pidfd);
  ::close(listener);
  if (child < 0) {
    error = std::string("cannot start the symbolizer service: ") + std::strerror(errno);
    ::unlink(socket_path.c_str());
    ::rmdir(directory.c_str());
    return {};
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return socket_path;
}

}  // namespace heapkeeper::analysis

namespace heapkeeper::analysis {

namespace {

// The user's service's directory: $XDG_RUNTIME_DIR itself, or /tmp/heapkeeper-<uid>, which must be
// ours, 0700 and no link (anyone may create names in /tmp).
bool user_directory_is_ours(const std::string& socket_path) {
  const std::string directory = socket_path.substr(0, socket_path.rfind('/'));
  ::mkdir(directory.c_str(), 0700);
  struct stat status {};
  return ::lstat(directory.c_str(), &status) == 0 && S_ISDIR(status.st_mode) && status.st_uid == ::getuid() &&
         (status.st_mode & 077) == 0;
}

// Names `<socket>.<pid>` left by claiming binaries killed between bind() and link() (a build
// interrupted at its end): removed once their pid is gone, when a binary next claims the name. A
// pid reused since keeps its file until that process is gone too; a claim in progress is alive.
void remove_dead_claims(const std::string& socket_path) {
  const size_t slash = socket_path.rfind('/');
  const std::string directory = socket_path.substr(0, slash);
  const std::string prefix = socket_path.substr(slash + 1) + ".";
  std::error_code error;
  for (std::filesystem::directory_iterator entry(directory, error), end; !error && entry != end;
       entry.increment(error)) {
    const std::string name = entry->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0 || name.size() > prefix.size() + 9)
      continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos || digits[0] == '0') continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    struct stat status {};
    if (::kill(pid, 0) != 0 && errno == ESRCH && ::lstat(entry->path().c_str(), &status) == 0 &&
        S_ISSOCK(status.st_mode) && status.st_uid == ::getuid())
      remove_if_unchanged(entry->path().string(), status);
  }
}

}  // namespace

UserServiceClaim claim_user_service(const std::string& socket_path) {
  UserServiceClaim claim;
  sockaddr_un address{};
  if (socket_path.empty() || socket_path[0] != '/' || !fill_address(socket_path, address)) return claim;
  if (someone_serves(socket_path)) {
    claim.served = true;
    return claim;
  }
  if (!user_directory_is_ours(socket_path)) return claim;
  remove_dead_claims(socket_path);
  // Bound and listening under a name of this process first, then linked to the service's name:
  // link() fails where the name exists, so of the binaries that processes exiting together start
  // (a parallel build's), one takes the name and the others find it answering and pass their dumps
  // on; and the name never stands for a socket that does not listen yet, which a connect would
  // take for a dead service's and replace.
  const std::string own_name = socket_path + "." + std::to_string(::getpid());
  sockaddr_un own_address{};
  if (fill_address(own_name, own_address)) {
    ::unlink(own_name.c_str());
    const int listener = listening_at(own_address);
    bool linkable = listener >= 0;
    for (int attempt = 0; linkable && attempt < 2; ++attempt) {
      if (::link(own_name.c_str(), socket_path.c_str()) == 0) {
        ::unlink(own_name.c_str());
        ::stat(socket_path.c_str(), &claim.bound);
        claim.listener = listener;
        return claim;
      }
      if (errno != EEXIST) linkable = false;  // no hard links here: bound under the name itself, below
      if (!linkable) break;
      struct stat seen {};
      const bool there = ::lstat(socket_path.c_str(), &seen) == 0;
      if (someone_serves(socket_path)) {
        claim.served = true;
        break;
      }
      if (there) remove_if_unchanged(socket_path, seen);  // a dead service's: replaced
    }
    ::unlink(own_name.c_str());
    if (listener >= 0) ::close(listener);
    if (linkable || claim.served) return claim;
  }
  // No room for the longer name, or a file system without hard links: bound under the service's
  // name itself, replacing what is there.
  ::unlink(socket_path.c_str());
  const int listener = listening_at(address);
  if (listener < 0) return claim;
  ::stat(socket_path.c_str(), &claim.bound);
  claim.listener = listener;
  return claim;
}

void release_user_service(UserServiceClaim& claim, const std::string& socket_path) {
  if (claim.listener < 0) return;
  remove_if_unchanged(socket_path, claim.bound);
  ::close(claim.listener);
  claim.listener = -1;
}

bool ask_user_service(const std::string& socket_path, const std::string& dump, std::string& reply) {
  sockaddr_un address{};
  if (!fill_address(socket_path, address)) return false;
  const int fd = above_standard_descriptors(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd < 0) return false;
  // The service may still be answering the binary that started it (reading the modules its dump
  // names): as long as the library would wait for this binary.
  const timeval timeout{kClientTimeoutSeconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  ucred peer{};
  socklen_t length = sizeof peer;
  const uint64_t size = dump.size();
  bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0 &&
            ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) == 0 && peer.uid == ::getuid() &&
            write_all(fd, reinterpret_cast<const char*>(&size), sizeof size) &&
            write_all(fd, dump.data(), dump.size()) && ::shutdown(fd, SHUT_WR) == 0;
  reply.clear();
  char buffer[65536];
  while (ok) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ok = false;
    if (n <= 0) break;
    if (reply.size() + static_cast<size_t>(n) > kMaxDumpBytes) ok = false;
    reply.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  // A service that refused the dump (or died) closes without an answer: the binary answers itself.
  return ok && !reply.empty();
}

void start_user_symbolizer_service(UserServiceClaim& claim, const std::string& socket_path,
                                   std::unique_ptr<ModuleSymbolizer> symbolizer) {
  if (claim.listener < 0) return;
  const int listener = claim.listener;
  claim.listener = -1;
  std::fflush(nullptr);
  const pid_t child = ::fork();
  if (child != 0) {
    ::close(listener);
    if (child > 0) {
      int ignored = 0;
      while (::waitpid(child, &ignored, 0) < 0 && errno == EINTR) {
      }
    } else {
      remove_if_unchanged(socket_path, claim.bound);
    }
    return;
  }
  // The intermediate child exits at once: the service is nobody's child but init's (or a
  // subreaper's: the library asks for a service only when the program is none).
  if (::fork() != 0) ::_exit(0);
  ::setsid();
  // Nothing of the program is held: the library started the binary with only 0, 1 and 2 open.
  detach_from_terminal();
  serve(listener, claim.bound, Lifetime{}, std::string(), socket_path, std::move(symbolizer));
}

}  // namespace heapkeeper::analysis
