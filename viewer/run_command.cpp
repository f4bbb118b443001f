// Implementation of `heapkeeper run` (see run_command.h).
//
// The launcher only prepares the environment (LD_PRELOAD first, then HEAPKEEPER_* settings) and
// execs: the program keeps its pid, its exit status and its signals, and its own children inherit
// the environment, so they are tracked too, each as its own process.
#include "viewer/run_command.h"

#include <elf.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "allocator/setting_text.h"
#include "analysis/symbolizer_service.h"
#include "viewer/view_format.h"

namespace heapkeeper::view {
namespace {

bool valid_depth(const std::string& text) {
  if (text.empty() || text.size() > 3 || text.find_first_not_of("0123456789") != std::string::npos) return false;
  int value = std::stoi(text);
  return value >= 1 && value <= 128;
}

void set_checked(const char* variable, const char* option, const std::string& value, bool valid, const char* expected,
                 const char* fallback) {
  if (value.empty()) return;
  if (!valid) {
    fmt::print(stderr, "heapkeeper: invalid {} '{}' (expected {}); using the default {}\n", option, value, expected,
               fallback);
    return;
  }
  setenv(variable, value.c_str(), 1);
}

// The file execvp would run for `name`: as given when it holds a '/', else the first executable
// regular file of that name on PATH; empty if there is none (execvp then reports the error).
std::string resolve_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string directories = path != nullptr ? path : "/bin:/usr/bin";
  size_t start = 0;
  for (;;) {
    const size_t end = directories.find(':', start);
    std::string directory = directories.substr(start, end == std::string::npos ? std::string::npos : end - start);
    std::string candidate = (directory.empty() ? std::string(".") : directory) + "/" + name;
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(candidate.c_str(), X_OK) == 0)
      return candidate;
    if (end == std::string::npos) return {};
    start = end + 1;
  }
}

// Whether an ELF file asks for a program interpreter (the dynamic loader, which honours
// LD_PRELOAD); nullopt-like -1 when the file is not ELF (a script: its interpreter decides).
int has_program_interpreter(int fd) {
  unsigned char ident[EI_NIDENT];
  if (pread(fd, ident, sizeof(ident), 0) != static_cast<ssize_t>(sizeof(ident)) ||
      std::memcmp(ident, ELFMAG, SELFMAG) != 0)
    return -1;
  const bool wide = ident[EI_CLASS] == ELFCLASS64;
  uint64_t table = 0;
  unsigned count = 0, entry_size = 0;
  if (wide) {
    Elf64_Ehdr header;
    if (pread(fd, &header, sizeof(header), 0) != static_cast<ssize_t>(sizeof(header))) return -1;
    table = header.e_phoff, count = header.e_phnum, entry_size = header.e_phentsize;
  } else {
    Elf32_Ehdr header;
    if (pread(fd, &header, sizeof(header), 0) != static_cast<ssize_t>(sizeof(header))) return -1;
    table = header.e_phoff, count = header.e_phnum, entry_size = header.e_phentsize;
  }
  if (entry_size < (wide ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr))) return -1;
  for (unsigned i = 0; i < count; ++i) {
    uint32_t type = 0;  // p_type is the first field in both classes
    if (pread(fd, &type, sizeof(type), static_cast<off_t>(table + uint64_t{i} * entry_size)) != sizeof(type)) return -1;
    if (type == PT_INTERP) return 1;
  }
  return 0;
}

// Why the dynamic loader will not preload heapkeeper into `path` (empty when it will). Static
// binaries have no loader; for a binary that changes its user or group (setuid, setgid, file
// capabilities) the kernel asks for secure execution (AT_SECURE), and the loader then ignores
// LD_PRELOAD of any library outside the system directories.
std::string untrackable_reason(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);  // a FIFO named as PROG: no wait
  if (fd < 0) return {};
  struct stat st;
  const bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  const int interpreter = regular ? has_program_interpreter(fd) : -1;
  close(fd);
  if (interpreter == 0) return "it is statically linked (no dynamic loader, so LD_PRELOAD is ignored)";
  if (interpreter < 0) return {};
  // Set-id bits do nothing on a nosuid mount or under no_new_privs.
  struct statvfs filesystem;
  if (statvfs(path.c_str(), &filesystem) == 0 && (filesystem.f_flag & ST_NOSUID) != 0) return {};
  if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1) return {};
  const std::string secure = "; the dynamic loader ignores LD_PRELOAD in secure-execution mode";
  if ((st.st_mode & S_ISUID) != 0 && st.st_uid != getuid())
    return fmt::format("it is setuid (runs as uid {}, not {}){}", st.st_uid, getuid(), secure);
  if ((st.st_mode & S_ISGID) != 0 && (st.st_mode & S_IXGRP) != 0 && st.st_gid != getgid())
    return fmt::format("it is setgid (runs as gid {}, not {}){}", st.st_gid, getgid(), secure);
  if (getuid() != 0 && getxattr(path.c_str(), "security.capability", nullptr, 0) > 0)
    return "it has file capabilities" + secure;
  return {};
}

// A relative path in a HEAPKEEPER_* variable, made absolute here: the program and its children
// may start in other directories (git -C, make -C), and each would otherwise write elsewhere.
void make_variable_absolute(const char* variable) {
  const char* value = std::getenv(variable);
  if (value == nullptr || *value == '\0' || *value == '/' || std::strcmp(value, "stderr") == 0) return;
  std::error_code error;
  const std::filesystem::path absolute = std::filesystem::absolute(value, error);
  if (!error) setenv(variable, absolute.c_str(), 1);
}

// This binary's path: /proc/self/exe, or without /proc (a mount namespace or chroot that lacks it)
// the path it was executed by (AT_EXECFN), made absolute. Empty when neither can be had.
std::filesystem::path own_executable() {
  std::error_code error;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) return self;
  const auto* executed = reinterpret_cast<const char*>(getauxval(AT_EXECFN));
  if (executed == nullptr || *executed == '\0') return {};
  char resolved[PATH_MAX];
  if (realpath(executed, resolved) == nullptr) return {};
  return resolved;
}

}  // namespace

std::string locate_preload_library() {
  if (const char* explicit_path = std::getenv("HEAPKEEPER_LIBRARY");
      explicit_path != nullptr && *explicit_path != '\0') {
    return explicit_path;
  }
  std::error_code error;
  const std::filesystem::path self = own_executable();
  if (self.empty()) return "libheapkeeper.so";
  for (const char* relative : {"../lib/libheapkeeper.so", "../lib/heapkeeper/libheapkeeper.so"}) {
    std::filesystem::path candidate = self.parent_path() / relative;
    if (std::filesystem::exists(candidate, error)) return std::filesystem::weakly_canonical(candidate, error).string();
  }
  return "libheapkeeper.so";
}

int run_program(const RunOptions& options) {
  if (options.command.empty()) {
    fmt::print(stderr, "heapkeeper: run needs a program: heapkeeper run [options] -- PROG [ARGS...]\n");
    return 2;
  }
  const std::string library = options.library.empty() ? locate_preload_library() : options.library;
  if (access(library.c_str(), R_OK) != 0) {
    fmt::print(stderr, "heapkeeper: cannot read the preload library {}: {} (set HEAPKEEPER_LIBRARY)\n", library,
               std::strerror(errno));
    return 126;
  }
  // The run's symbolizer service, made before anything is set for the program: every traced
  // process of the run hands its report over to it (report/analysis_handoff.h).
  std::string service_error;
  const std::string service = analysis::start_symbolizer_service(service_error);
  if (!service.empty()) setenv("HEAPKEEPER_SYMBOLIZER_SOCKET", service.c_str(), 1);
  const std::filesystem::path self = own_executable();
  if (!self.empty()) setenv("HEAPKEEPER_BINARY", self.c_str(), 1);
  std::string preload = library;
  if (const char* existing = std::getenv("LD_PRELOAD"); existing != nullptr && *existing != '\0') {
    preload += ":";
    preload += existing;
  }
  setenv("LD_PRELOAD", preload.c_str(), 1);
  if (!options.report_path.empty()) setenv("HEAPKEEPER_REPORT", options.report_path.c_str(), 1);
  if (!options.suppressions.empty()) setenv("HEAPKEEPER_SUPPRESSIONS", options.suppressions.c_str(), 1);
  set_checked("HEAPKEEPER_STACK_DEPTH", "--stack-depth", options.stack_depth, valid_depth(options.stack_depth),
              "a whole number from 1 to 128", "24");
  set_checked("HEAPKEEPER_MODE", "--mode", options.mode,
              options.mode == "off" || options.mode == "detect" || options.mode == "collect", "off, detect or collect",
              "detect");
  set_checked("HEAPKEEPER_ON_BAD_FREE", "--on-bad-free", options.on_bad_free,
              options.on_bad_free == "abort" || options.on_bad_free == "continue", "abort or continue", "abort");
  // Checked here with the library's own parsers (allocator/setting_text.h) and words: a bad value
  // passed on was warned about by every process of the run, under the variable's name.
  uint64_t interval_ms = 0, exit_code = 0;
  set_checked("HEAPKEEPER_SCAN_INTERVAL", "--scan-interval", options.scan_interval,
              alloc::parse_duration_ms(options.scan_interval.c_str(), interval_ms),
              "a duration such as 10s, 500ms or 0", "0 (never)");
  set_checked("HEAPKEEPER_EXITCODE", "--exitcode", options.exit_code,
              alloc::parse_unsigned(options.exit_code.c_str(), exit_code) && exit_code <= 255,
              "a whole number from 0 to 255", "0");
  if (options.quiet) setenv("HEAPKEEPER_QUIET", "1", 1);
  if (options.python_objects) {
    // malloc and malloc_debug already send every object through malloc: the user's choice stands.
    // Anything else (pymalloc, pymalloc_debug, debug) would keep small objects inside pymalloc's
    // arenas, which is what the option is asked to undo: replaced, and said so.
    const char* current = std::getenv("PYTHONMALLOC");
    const std::string was = current != nullptr ? current : "";
    if (was != "malloc" && was != "malloc_debug") {
      if (!was.empty())
        fmt::print(stderr, "heapkeeper: --python-objects: PYTHONMALLOC={} replaced by malloc\n",
                   printable(was.substr(0, 64), false));
      setenv("PYTHONMALLOC", "malloc", 1);
    }
  }
  for (const char* variable :
       {"HEAPKEEPER_REPORT", "HEAPKEEPER_LOG_PATH", "HEAPKEEPER_SUPPRESSIONS", "HEAPKEEPER_BASELINE"})
    make_variable_absolute(variable);

  // A program the loader will not preload into runs all the same, untracked, and says so: without
  // this line it would exit as usual with no report and no word.
  const std::string program = resolve_program(options.command[0]);
  if (!program.empty()) {
    const std::string reason = untrackable_reason(program);
    if (!reason.empty())
      fmt::print(stderr, "heapkeeper: {} cannot be tracked: {}; running it untracked\n", options.command[0], reason);
  }

  std::vector<char*> argv;
  for (const std::string& arg : options.command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  execvp(argv[0], argv.data());
  const int error = errno;
  fmt::print(stderr, "heapkeeper: cannot run {}: {}\n", options.command[0], std::strerror(error));
  return error == ENOENT ? 127 : 126;
}

}  // namespace heapkeeper::view
