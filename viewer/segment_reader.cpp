// Implementation of the segment reader (see segment_reader.h).
//
// The reader maps the segment with mmap directly (not through Boost) because it must fstat the
// descriptor first: the owner and the size decide whether the file is mapped at all.
#include "viewer/segment_reader.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>
#include <thread>
#include <vector>

#include "allocator/setting_text.h"
#include "analysis/module_symbolizer.h"
#include "analysis/report_renderer.h"
#include "report/raw_dump.h"
#include "stats/segment_files.h"

namespace heapkeeper::view {
namespace {

using stats::SharedSegment;

template <typename T>
T load(const T& field) {
  return __atomic_load_n(&field, __ATOMIC_ACQUIRE);
}

template <size_t N>
std::string bounded_string(const char (&text)[N]) {
  size_t length = strnlen(text, N);
  return std::string(text, length);
}

template <size_t N>
void terminate(char (&text)[N]) {
  text[N - 1] = '\0';
}

void sanitise_frames(stats::Frame* frames, uint32_t& depth) {
  if (depth > stats::kMaxFrames) depth = stats::kMaxFrames;
  for (uint32_t i = 0; i < stats::kMaxFrames; ++i) {
    terminate(frames[i].function);
    terminate(frames[i].module);
    terminate(frames[i].file);
  }
}

// The state letter of a /proc/.../stat file (R, S, D, T, t, Z, X, I), or 0 if it cannot be read.
char stat_state_letter(const std::string& path) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  return close != std::string::npos && close + 2 < text.size() ? text[close + 2] : '\0';
}

// The process's state as ps shows it, or 0 if it is not there. That is its main thread's, except
// when the main thread has ended (pthread_exit) and stays a zombie while the others run: then
// the most active state among its threads.
char process_state_letter(pid_t pid) {
  const std::string base = "/proc/" + std::to_string(pid);
  const char leader = stat_state_letter(base + "/stat");
  if (leader != 'Z' && leader != 'X') return leader;
  static constexpr const char* kActiveFirst = "RDSItTZX";
  char best = leader;
  DIR* tasks = opendir((base + "/task").c_str());
  if (tasks == nullptr) return leader;
  while (dirent* entry = readdir(tasks)) {
    if (entry->d_name[0] < '1' || entry->d_name[0] > '9') continue;
    const char state = stat_state_letter(base + "/task/" + entry->d_name + "/stat");
    const char* rank = state != '\0' ? std::strchr(kActiveFirst, state) : nullptr;
    if (rank != nullptr && rank < std::strchr(kActiveFirst, best)) best = state;
  }
  closedir(tasks);
  return best;
}

// The real, effective, saved and filesystem uids of a process, from /proc/PID/status.
std::vector<uid_t> process_uids(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  std::vector<uid_t> uids;
  while (std::getline(in, line)) {
    if (line.rfind("Uid:", 0) != 0) continue;
    std::istringstream fields(line.substr(4));
    unsigned long uid = 0;
    while (fields >> uid) uids.push_back(static_cast<uid_t>(uid));
    break;
  }
  return uids;
}

// A process makes its segment only after stats::kFirstPublishDelayMs (a forked child after a
// second): asked about one younger than that, wait until it is old enough to have one.
constexpr int64_t kSegmentExpectedByMs = 1500;
// How long a reader waits for a producer that is on its way (its publisher thread runs, the
// process is not stopped) but slow: on a loaded machine the publisher thread may get no CPU for
// seconds, and "no segment" or a snapshot without names would be a wrong answer, not a late one.
// Only a producer stuck that long is given up on.
constexpr int64_t kSlowProducerPatienceMs = 30000;
// The longest a reader waits for the segment of a process started with HEAPKEEPER_STATS_DELAY: the
// delay beyond which its publisher thread is named heapkeeper-wait.
constexpr int64_t kLongestWaitForDelayedMs = stats::kLongDelayMs;

// The HEAPKEEPER_STATS_DELAY process `pid` was started with ("" when unset, unreadable, or with
// HEAPKEEPER_STATS=0, under which no segment comes at all): a process that makes its segment later
// than usual is said to, not "not under heapkeeper". Read through a thread of the process when its
// own file fails (its main thread has called pthread_exit: ESRCH).
std::string stats_delay_of(pid_t pid) {
  static constexpr std::string_view kName = "HEAPKEEPER_STATS_DELAY=";
  const std::string base = "/proc/" + std::to_string(pid);
  std::vector<std::string> paths{base + "/environ"};
  if (DIR* tasks = opendir((base + "/task").c_str())) {
    while (dirent* entry = readdir(tasks)) {
      if (entry->d_name[0] >= '1' && entry->d_name[0] <= '9' && paths.size() < 8)
        paths.push_back(base + "/task/" + entry->d_name + "/environ");
    }
    closedir(tasks);
  }
  for (const std::string& path : paths) {
    std::ifstream environment(path, std::ios::binary);
    std::string entry, delay;
    bool any = false, stats_off = false;
    while (std::getline(environment, entry, '\0')) {
      any = true;
      if (entry.rfind(kName, 0) == 0) delay = entry.substr(kName.size());
      if (entry == "HEAPKEEPER_STATS=0") stats_off = true;
    }
    if (any) return stats_off ? "" : delay;
  }
  return "";
}

// Whether process `pid` runs heapkeeper's publisher thread under `thread_name` and is not stopped:
// its segment, or its next snapshot, is coming, however long the machine makes it wait (under
// kPublisherThreadName), or it waits a long HEAPKEEPER_STATS_DELAY (kWaitingPublisherThreadName).
// (A publisher that could not make its segment ends its thread, and HEAPKEEPER_STATS=0 starts none.)
bool publisher_named(pid_t pid, std::string_view thread_name) {
  const std::string tasks_path = "/proc/" + std::to_string(pid) + "/task";
  DIR* tasks = opendir(tasks_path.c_str());
  if (tasks == nullptr) return false;
  bool found = false;
  while (dirent* entry = readdir(tasks)) {
    if (entry->d_name[0] < '1' || entry->d_name[0] > '9') continue;
    std::ifstream comm(tasks_path + "/" + entry->d_name + "/comm");
    std::string name;
    std::getline(comm, name);
    if (name == thread_name) {
      const char state = stat_state_letter(tasks_path + "/" + entry->d_name + "/stat");
      found = state != 'T' && state != 't' && state != 'Z' && state != 'X' && state != '\0';
      break;
    }
  }
  closedir(tasks);
  return found;
}

bool publisher_on_its_way(pid_t pid) { return publisher_named(pid, stats::kPublisherThreadName); }

// A segment's file may shrink while it is mapped: its owner (any user, for a root reader) can
// truncate it, and a read of a page past the new end raises SIGBUS, which killed `view`, `export`
// and `serve` in the middle of a read. Each mapping is registered here; a SIGBUS inside one
// replaces the whole mapping with zero pages (the read then finds no magic number, sequence 0)
// and marks it cut short, which the reader reports. Slots are lock-free: `serve` reads segments
// on several threads, and the handler may run on any of them.
struct GuardedMapping {
  std::atomic<uintptr_t> start{0};  // 0: free; 1: being filled
  std::atomic<size_t> size{0};
  std::atomic<bool> cut{false};
};
constexpr int kGuardSlots = 256;
GuardedMapping g_guarded[kGuardSlots];
struct sigaction g_previous_sigbus;
std::once_flag g_sigbus_installed;

void on_sigbus(int signal_number, siginfo_t* info, void* context) {
  const auto address = reinterpret_cast<uintptr_t>(info->si_addr);
  for (GuardedMapping& slot : g_guarded) {
    const uintptr_t start = slot.start.load(std::memory_order_acquire);
    const size_t size = slot.size.load(std::memory_order_acquire);
    if (start <= 1 || address < start || address - start >= size) continue;
    const int saved = errno;
    void* zeros = mmap(reinterpret_cast<void*>(start), size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    errno = saved;
    if (zeros == MAP_FAILED) break;
    slot.cut.store(true, std::memory_order_release);
    return;  // the faulting read runs again, on zeros
  }
  // Not a segment's page: what would have happened without this handler.
  if ((g_previous_sigbus.sa_flags & SA_SIGINFO) != 0 && g_previous_sigbus.sa_sigaction != nullptr) {
    g_previous_sigbus.sa_sigaction(signal_number, info, context);
  } else if (g_previous_sigbus.sa_handler != SIG_DFL && g_previous_sigbus.sa_handler != SIG_IGN) {
    g_previous_sigbus.sa_handler(signal_number);
  } else {
    ::signal(SIGBUS, SIG_DFL);  // the read faults again and the default action follows
  }
}

int guard_mapping(void* mapping, size_t size) {
  std::call_once(g_sigbus_installed, [] {
    struct sigaction action {};
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, &g_previous_sigbus);
  });
  for (int i = 0; i < kGuardSlots; ++i) {
    uintptr_t free_slot = 0;
    if (!g_guarded[i].start.compare_exchange_strong(free_slot, 1, std::memory_order_acq_rel)) continue;
    g_guarded[i].cut.store(false, std::memory_order_relaxed);
    g_guarded[i].size.store(size, std::memory_order_release);
    g_guarded[i].start.store(reinterpret_cast<uintptr_t>(mapping), std::memory_order_release);
    return i;
  }
  return -1;  // more segments open at once than slots: unguarded, as before
}

void unguard_mapping(int slot) {
  if (slot < 0) return;
  g_guarded[slot].size.store(0, std::memory_order_release);
  g_guarded[slot].start.store(0, std::memory_order_release);
}

uint64_t realtime_ns() {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000000ull + static_cast<uint64_t>(now.tv_nsec);
}

}  // namespace

SegmentReader::~SegmentReader() { close(); }

void SegmentReader::close() {
  unguard_mapping(guard_slot_);
  guard_slot_ = -1;
  if (mapping_ != nullptr) munmap(mapping_, size_);
  if (fd_ >= 0) ::close(fd_);
  mapping_ = nullptr;
  segment_ = nullptr;
  fd_ = -1;
  path_.clear();
}

std::string SegmentInfo::state_name() const {
  if (!producer_alive) return producer_exited ? "exited" : "stale";
  switch (process_state) {
    case 'R':
      return "running";
    case 'S':
      return "sleeping";
    case 'D':
      return "disk-sleep";
    case 'T':
      return "stopped";
    case 't':
      return "traced";
    case 'Z':
      return "zombie";
    case 'I':
      return "idle";
    default:
      return "running";
  }
}

bool SegmentReader::validate(const void* data, size_t size, uid_t owner, std::string& error) {
  if (size < sizeof(stats::SegmentHeader)) {
    error = "segment is truncated (" + std::to_string(size) + " bytes, too small for a header)";
    return false;
  }
  stats::SegmentHeader header;
  std::memcpy(&header, data, sizeof(header));
  if (stats::header_unfinished(header)) {
    error = "unfinished segment (its process is creating it, or died or exec'd while doing so)";
    return false;
  }
  if (header.magic != stats::kSegmentMagic) {
    error = "not a heapkeeper segment (bad magic number)";
    return false;
  }
  if (header.version != stats::kLayoutVersion) {
    error = "segment layout version " + std::to_string(header.version) + " is not the supported version " +
            std::to_string(stats::kLayoutVersion) + " (use the heapkeeper that matches the program's library)";
    return false;
  }
  if (header.header_size != sizeof(stats::SegmentHeader) || header.segment_size != sizeof(SharedSegment)) {
    error = "segment sizes do not match layout version " + std::to_string(stats::kLayoutVersion) + " (corrupt segment)";
    return false;
  }
  if (size < sizeof(SharedSegment)) {
    error =
        "segment is truncated (" + std::to_string(size) + " of " + std::to_string(sizeof(SharedSegment)) + " bytes)";
    return false;
  }
  if (header.producer_uid != owner) {
    error =
        "segment claims uid " + std::to_string(header.producer_uid) + " but is owned by uid " + std::to_string(owner);
    return false;
  }
  if (header.producer_pid <= 0) {
    error = "segment names an invalid pid";
    return false;
  }
  return true;
}

bool SegmentReader::open_path(const std::string& path, bool for_commands, std::string& error) {
  close();
  last_unfinished_ = false;
  // O_NONBLOCK: anyone may plant a FIFO under that name, and opening one would wait forever; the
  // S_ISREG check below then refuses it.
  fd_ = ::open(path.c_str(), (for_commands ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd_ < 0 && errno == EACCES) {
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && st.st_uid != getuid()) {
      error = path + " belongs to uid " + std::to_string(st.st_uid) + "; only its owner (or root) may read it";
      return false;
    }
  }
  if (fd_ < 0) {
    error = errno == ENOENT ? "no heapkeeper segment " + path + " (is the process running under heapkeeper?)"
                            : "cannot open " + path + ": " + std::strerror(errno);
    return false;
  }
  struct stat st;
  if (fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    error = path + " is not a regular shared-memory file";
    close();
    return false;
  }
  if (st.st_uid != getuid() && geteuid() != 0) {
    error = path + " belongs to uid " + std::to_string(st.st_uid) + "; only its owner (or root) may read it";
    close();
    return false;
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ < sizeof(stats::SegmentHeader)) {
    error = "segment " + path + " is truncated (" + std::to_string(size_) + " bytes)";
    last_unfinished_ = true;  // made (shm_open) but not yet sized, or cut short
    close();
    return false;
  }
  mapping_ = mmap(nullptr, size_, for_commands ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd_, 0);
  if (mapping_ == MAP_FAILED) {
    mapping_ = nullptr;
    error = "cannot map " + path + ": " + std::strerror(errno);
    close();
    return false;
  }
  guard_slot_ = guard_mapping(mapping_, size_);
  if (!validate(mapping_, size_, st.st_uid, error) || cut_short()) {
    stats::SegmentHeader header;
    std::memcpy(&header, mapping_, sizeof(header));
    // The producer sizes the file before it writes the header: a short file whose header is
    // written was cut afterwards, and waiting for it to be finished would only delay the refusal.
    last_unfinished_ = stats::header_unfinished(header);
    if (cut_short()) {
      error = "the file was cut short while it was read";
      last_unfinished_ = false;
    }
    error = path + ": " + error;
    close();
    return false;
  }
  segment_ = static_cast<const SharedSegment*>(mapping_);
  writable_ = for_commands;
  owner_ = st.st_uid;
  producer_pid_ = segment_->header.producer_pid;
  path_ = path;
  return true;
}

// Whether the open segment may be believed to be process `pid`'s. Anyone can create a file in
// /dev/shm and give it any contents: a reader (root especially) must not show figures another
// user forged for a process of someone else's.
bool SegmentReader::trusted_for(pid_t pid, std::string& error) const {
  stats::SegmentHeader header;
  std::memcpy(&header, &segment_->header, sizeof(header));
  if (header.producer_pid != pid) {
    error = path_ + " names pid " + std::to_string(header.producer_pid) + ", not " + std::to_string(pid);
    return false;
  }
  if (!(stats::namespace_of(header) == stats::own_pid_namespace())) {
    error = path_ + " was made by a process in another pid namespace (its pid " + std::to_string(pid) +
            " is not this one's)";
    return false;
  }
  const std::vector<uid_t> uids = process_uids(pid);
  if (uids.empty()) return true;  // the process is gone: the segment reads as stale
  // Only root can make a file root's, and root could read the process anyway.
  if (owner_ == 0 || std::find(uids.begin(), uids.end(), owner_) != uids.end()) return true;
  error = path_ + " belongs to uid " + std::to_string(owner_) + " but pid " + std::to_string(pid) + " runs as uid " +
          std::to_string(uids.size() > 1 ? uids[1] : uids[0]) + ": refused (not made by that process)";
  return false;
}

bool SegmentReader::open_file(const SegmentFile& file, bool for_commands, std::string& error) {
  if (!open_path(file.path, for_commands, error)) return false;
  if (trusted_for(file.pid, error)) return true;
  close();
  return false;
}

bool SegmentReader::open(pid_t pid, bool for_commands, std::string& error, int unfinished_retries_left) {
  std::vector<SegmentFile> candidates;
  // A process started with HEAPKEEPER_STATS_DELAY makes its segment that long after its start
  // (whatever it is, it is read as the library reads it; a bad value is the default).
  const std::string delay_text = stats_delay_of(pid);
  uint64_t delay_ms = 0;
  if (delay_text.empty() || !alloc::parse_stats_delay_ms(delay_text.c_str(), delay_ms)) delay_ms = 0;
  int64_t age_ms = -1;
  for (;;) {
    for (SegmentFile& file : list_files()) {
      if (file.pid == pid) candidates.push_back(std::move(file));
    }
    age_ms = candidates.empty() ? stats::process_age_ms(pid) : -1;
    if (age_ms < 0) break;
    const int64_t due_ms = static_cast<int64_t>(std::min<uint64_t>(delay_ms, INT32_MAX));
    // A segment due later than a user waits for is not waited for: said so at once.
    if (due_ms - age_ms > kLongestWaitForDelayedMs) break;
    if (publisher_named(pid, stats::kWaitingPublisherThreadName)) break;
    if (age_ms >= due_ms + kSegmentExpectedByMs &&
        !(age_ms < due_ms + kSlowProducerPatienceMs && publisher_on_its_way(pid)))
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (candidates.empty()) {
    if (::kill(pid, 0) != 0 && errno == ESRCH) {
      error = "no process with pid " + std::to_string(pid);
      return false;
    }
    error = "no heapkeeper segment for pid " + std::to_string(pid);
    // The delay counts from the start of the program the process runs now, its age from the fork
    // (a process that exec'd has run longer than its program): the segment comes that late at least.
    if (!delay_text.empty() && age_ms >= 0 && static_cast<uint64_t>(age_ms) < delay_ms)
      error += " yet: it runs with HEAPKEEPER_STATS_DELAY=" + delay_text.substr(0, 64) +
               (delay_text.size() > 64 ? "..." : "") + " and makes it in " +
               std::to_string((delay_ms - static_cast<uint64_t>(age_ms) + 999) / 1000) + " s or later";
    else if (publisher_named(pid, stats::kWaitingPublisherThreadName))
      error += " yet: it runs with a HEAPKEEPER_STATS_DELAY longer than " + std::to_string(stats::kLongDelayMs / 1000) +
               " s (its environment does not say how long)";
    else
      error += " in /dev/shm (is it running under heapkeeper, without HEAPKEEPER_STATS=0?)";
    return false;
  }
  // Several files for one pid: the remains of an earlier process that had the pid, or a forgery.
  // The one whose producer runs wins; else the one that beat last.
  std::string first_error;
  std::string best_path;
  uint64_t best_heartbeat = 0;
  bool best_alive = false;
  bool unfinished = false;
  for (const SegmentFile& file : candidates) {
    std::string reason;
    if (!open_file(file, for_commands, reason)) {
      unfinished |= last_unfinished_;
      if (first_error.empty()) first_error = reason;
      continue;
    }
    const bool alive = info().producer_alive;
    const uint64_t heartbeat = load(segment_->header.heartbeat_ns);
    if (best_path.empty() || (alive && !best_alive) || (alive == best_alive && heartbeat > best_heartbeat)) {
      best_path = file.path;
      best_alive = alive;
      best_heartbeat = heartbeat;
    }
  }
  if (best_path.empty()) {
    close();
    // Asked at the moment the process makes its segment (the file exists, its header not yet
    // written): a few more tries, while the process lives, before calling it an error.
    // A slow producer (a loaded machine) is given longer, while its publisher thread runs.
    if (unfinished && (::kill(pid, 0) == 0 || errno == EPERM) &&
        (unfinished_retries_left > 0 ||
         (stats::process_age_ms(pid) < kSlowProducerPatienceMs && publisher_on_its_way(pid)))) {
      --unfinished_retries_left;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      return open(pid, for_commands, error, unfinished_retries_left);
    }
    error = first_error;
    return false;
  }
  if (path_ != best_path) return open_file({pid, best_path}, for_commands, error);
  return true;
}

SegmentInfo SegmentReader::info() const {
  SegmentInfo info;
  if (segment_ == nullptr) return info;
  stats::SegmentHeader header;
  std::memcpy(&header, &segment_->header, sizeof(header));
  terminate(header.program);
  terminate(header.command_line);
  info.pid = header.producer_pid;
  info.program = bounded_string(header.program);
  info.command_line = bounded_string(header.command_line);
  info.start_time_ns = header.start_time_ns;
  info.producer_exited = load(segment_->header.state) == static_cast<uint32_t>(stats::ProducerState::kExited);
  info.producer_alive = !info.producer_exited && stats::producer_runs(header, stats::own_pid_namespace());
  // A process that exec'd a program not run under heapkeeper keeps the pid and start time; it
  // stops beating and no longer maps the file.
  if (info.producer_alive && header.heartbeat_ns + stats::kStaleAfterNs < realtime_ns() &&
      stats::process_maps_file(info.pid, path_.c_str()) == 0)
    info.producer_alive = false;
  if (info.producer_alive) info.process_state = process_state_letter(info.pid);
  return info;
}

namespace {
// A corrupt segment can hold NaN or infinite rates; sorting and printing need real numbers.
void finite(double& value) {
  if (!std::isfinite(value) || value < 0) value = 0;
}
}  // namespace

void SegmentReader::sanitise(stats::Snapshot& s) {
  finite(s.allocation_rate);
  finite(s.free_rate);
  for (auto& site : s.sites) {
    finite(site.allocation_rate);
    if (!std::isfinite(site.growth_bytes_per_second)) site.growth_bytes_per_second = 0;
  }
  for (auto& scan : s.scans) finite(scan.pause_ms);
  if (s.site_count > stats::kMaxSites) s.site_count = stats::kMaxSites;
  if (s.thread_count > stats::kMaxThreads) s.thread_count = stats::kMaxThreads;
  if (s.scan_count > stats::kMaxScans) s.scan_count = stats::kMaxScans;
  if (s.leak_count > stats::kMaxLeaks) s.leak_count = stats::kMaxLeaks;
  if (s.series_count > stats::kSeriesLength) s.series_count = stats::kSeriesLength;
  s.series_next %= stats::kSeriesLength;
  if (s.module_count > stats::kMaxModules) s.module_count = stats::kMaxModules;
  if (s.memory.range_count > stats::kMaxRanges) s.memory.range_count = stats::kMaxRanges;
  for (auto& module : s.modules) {
    terminate(module.path);
    if (module.build_id_length > sizeof(module.build_id)) module.build_id_length = 0;
  }
  if (s.python_code_count > stats::kMaxPythonCodes) s.python_code_count = stats::kMaxPythonCodes;
  for (auto& code : s.python_codes) {
    terminate(code.qualname);
    terminate(code.filename);
    if (code.linetable_length > sizeof(code.linetable)) code.linetable_length = 0;
  }
  for (auto& site : s.sites) sanitise_frames(site.frames, site.depth);
  for (auto& leak : s.leaks) sanitise_frames(leak.frames, leak.depth);
  for (auto& thread : s.threads) terminate(thread.name);
  const auto check_modules = [&](stats::Frame* frames) {
    for (uint32_t i = 0; i < stats::kMaxFrames; ++i) {
      if (frames[i].module_index >= s.module_count) frames[i].module_index = stats::kNoModuleIndex;
    }
  };
  for (auto& site : s.sites) check_modules(site.frames);
  for (auto& leak : s.leaks) check_modules(leak.frames);
}

namespace {
void copy_text(char* out, size_t capacity, const std::string& text) {
  const size_t n = std::min(capacity - 1, text.size());
  std::memcpy(out, text.data(), n);
  out[n] = '\0';
}
}  // namespace

void SegmentReader::name_frames(stats::Snapshot& s) const {
  if (s.symbolized == 0) return;
  if (symbolizer_ == nullptr) symbolizer_ = std::make_unique<analysis::ModuleSymbolizer>();
  std::vector<report::RawModule> modules(s.module_count);
  for (uint32_t i = 0; i < s.module_count; ++i) {
    const stats::ModuleEntry& from = s.modules[i];
    modules[i].unloaded = from.unloaded != 0;
    modules[i].load_bias = from.load_bias;
    modules[i].low = from.low;
    modules[i].high = from.high;
    modules[i].build_id.assign(reinterpret_cast<const char*>(from.build_id), from.build_id_length);
    modules[i].path = from.path;
  }
  std::vector<report::RawPythonCode> codes(s.python_code_count);
  for (uint32_t i = 0; i < s.python_code_count; ++i) {
    const stats::PythonCodeEntry& from = s.python_codes[i];
    codes[i].key = from.key;
    codes[i].first_line = from.first_line;
    codes[i].qualname = from.qualname;
    codes[i].filename = from.filename;
    codes[i].linetable.assign(reinterpret_cast<const char*>(from.linetable), from.linetable_length);
  }
  const analysis::PythonCodes python(codes);
  const auto name = [&](stats::Frame* frames, uint32_t depth) {
    for (uint32_t i = 0; i < depth; ++i) {
      stats::Frame& frame = frames[i];
      const report::RawModule* module = frame.module_index >= s.module_count ? nullptr : &modules[frame.module_index];
      const analysis::SymbolizedFrame named = symbolizer_->resolve(module, frame.address, python);
      if (named.python) frame.module_index = stats::kPythonFrameIndex;
      frame.module_offset = named.module_offset;
      frame.line = static_cast<uint32_t>(named.line > 0 ? named.line : 0);
      copy_text(frame.function, sizeof(frame.function), named.function);
      copy_text(frame.module, sizeof(frame.module), named.module);
      copy_text(frame.file, sizeof(frame.file), named.file);
    }
  };
  for (uint32_t i = 0; i < s.site_count; ++i) name(s.sites[i].frames, s.sites[i].depth);
  for (uint32_t i = 0; i < s.leak_count; ++i) name(s.leaks[i].frames, s.leaks[i].depth);
}

bool SegmentReader::snapshot(stats::Snapshot& out, std::string& error, bool figures_only) const {
  if (segment_ == nullptr) {
    error = "no segment open";
    return false;
  }
  // A reader that may write tells the producer it is watching, so frames come symbolized; the
  // first snapshot after a quiet spell may still be addresses only, so wait for a named one.
  if (writable_) {
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    auto* channel = const_cast<stats::CommandChannel*>(&segment_->channel);
    __atomic_store_n(&channel->reader_heartbeat_ns,
                     static_cast<uint64_t>(now.tv_sec) * 1000000000ull + static_cast<uint64_t>(now.tv_nsec),
                     __ATOMIC_RELEASE);
    // The producer sleeps on request_id between publications; waking it without a request makes
    // it publish the tables at once (stats/publisher.cpp).
    syscall(SYS_futex, &channel->request_id, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
    // A stopped process (SIGSTOP) publishes nothing until continued: take what is there.
    const auto producer_can_answer = [this] {
      const SegmentInfo now_info = info();
      return now_info.producer_alive && !now_info.stopped();
    };
    // Any snapshot the producer starts building after our heartbeat is named; the first one
    // published after it may have been started just before. So a producer that has published twice
    // since and still sends addresses will not name them; one that has not published yet is slow
    // (a loaded machine), not done, and is waited for up to kSlowProducerPatienceMs.
    uint64_t heartbeat_seen = load(segment_->header.heartbeat_ns);
    int publications = 0;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(kSlowProducerPatienceMs);
    while (publications < 2 && read_snapshot(out, error) && out.symbolized == 0 && producer_can_answer() &&
           std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const uint64_t heartbeat = load(segment_->header.heartbeat_ns);
      if (heartbeat != heartbeat_seen) {
        heartbeat_seen = heartbeat;
        ++publications;
      }
    }
  }
  return read_snapshot(out, error, figures_only);
}

bool SegmentReader::cut_short() const {
  return guard_slot_ >= 0 && g_guarded[guard_slot_].cut.load(std::memory_order_acquire);
}

// The header is checked again at every read, not only at open: its owner can rewrite the file
// under a reader that keeps it open (`view`, `serve`), which then showed whatever the new bytes
// said (found by an adversarial tester flipping bytes of a watched segment).
bool SegmentReader::header_unchanged(std::string& error) const {
  std::string changed;
  if (validate(mapping_, size_, owner_, changed) && segment_->header.producer_pid == producer_pid_) return true;
  if (changed.empty()) changed = "the segment now names another process";
  error = path_ + ": " + changed + ", after it was opened: refused";
  return false;
}

bool SegmentReader::read_snapshot(stats::Snapshot& out, std::string& error, bool figures_only) const {
  // The process publishes frames without names (stats::RawSnapshot): copied as published, then
  // expanded into `out`, whose frames have room for the names name_frames adds.
  if (!figures_only && raw_ == nullptr) raw_ = std::make_unique<stats::RawSnapshot>();
  for (int attempt = 0; attempt < 200; ++attempt) {
    const stats::SnapshotRead result =
        figures_only ? stats::try_read_snapshot_figures(*segment_, out) : stats::try_read_snapshot(*segment_, *raw_);
    if (cut_short()) {
      error = path_ + " was cut short (its file truncated) while it was read: refused";
      return false;
    }
    switch (result) {
      case stats::SnapshotRead::kConsistent:
        if (!header_unchanged(error)) return false;
        if (!figures_only) stats::expand_snapshot(*raw_, out);
        sanitise(out);
        if (!figures_only) name_frames(out);
        return true;
      case stats::SnapshotRead::kNeverPublished:
        error = "the process has not published its first snapshot yet";
        return false;
      case stats::SnapshotRead::kBeingWritten:
        break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  error = "the snapshot kept changing while being read (200 attempts)";
  return false;
}

bool SegmentReader::command(stats::Command command, int timeout_ms, std::string& response, std::string& error,
                            const std::string& argument) {
  return exchange(command, timeout_ms, response, error, argument, true);
}

bool SegmentReader::profile_dump(int timeout_ms, report::RawReport& dump, std::string& error) {
  std::string response;
  if (!exchange(stats::Command::kReport, timeout_ms, response, error, std::string(report::kProfileRequest), false))
    return false;
  if (report::parse_raw_dump(response, dump, error)) return true;
  error = "the process sent " + error;
  return false;
}

bool SegmentReader::exchange(stats::Command command, int timeout_ms, std::string& response, std::string& error,
                             const std::string& argument, bool render) {
  if (segment_ == nullptr || !writable_) {
    error = "segment not opened for commands";
    return false;
  }
  auto* channel = const_cast<stats::CommandChannel*>(&segment_->channel);
  const uint32_t me = static_cast<uint32_t>(getpid());
  uint32_t free_owner = 0;
  // One reader at a time; a channel held by a reader that died is taken over.
  if (!__atomic_compare_exchange_n(&channel->owner_pid, &free_owner, me, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    if (free_owner != me && kill(static_cast<pid_t>(free_owner), 0) == 0) {
      error = "another heapkeeper (pid " + std::to_string(free_owner) + ") is talking to this process; try again";
      return false;
    }
    __atomic_store_n(&channel->owner_pid, me, __ATOMIC_RELEASE);
  }
  if (argument.size() > stats::kArgumentCapacity) {
    __atomic_store_n(&channel->owner_pid, 0u, __ATOMIC_RELEASE);
    error = "the request is longer than " + std::to_string(stats::kArgumentCapacity) + " bytes";
    return false;
  }
  std::memcpy(channel->argument, argument.data(), argument.size());
  __atomic_store_n(&channel->argument_length, static_cast<uint32_t>(argument.size()), __ATOMIC_RELEASE);
  __atomic_store_n(&channel->command, static_cast<uint32_t>(command), __ATOMIC_RELEASE);
  const uint32_t request = __atomic_add_fetch(&channel->request_id, 1, __ATOMIC_ACQ_REL);
  syscall(SYS_futex, &channel->request_id, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  bool answered = false, job_stopped = false;
  while (std::chrono::steady_clock::now() < deadline) {
    const uint32_t seen = __atomic_load_n(&channel->response_id, __ATOMIC_ACQUIRE);
    if (seen == request) {
      answered = true;
      break;
    }
    const SegmentInfo now = info();
    if (!now.producer_alive) break;
    // Stopped by a signal (SIGSTOP, ^Z) after the request was sent: it cannot answer until it is
    // continued, so say so now rather than after the whole timeout. ('t', traced, is what the
    // process's own scan looks like while it stops the world: not a reason to give up.)
    if (now.process_state == 'T') {
      job_stopped = true;
      break;
    }
    timespec pause{0, 50'000'000};
    syscall(SYS_futex, &channel->response_id, FUTEX_WAIT, seen, &pause, nullptr, 0);
  }
  if (answered) {
    uint32_t length = __atomic_load_n(&channel->response_length, __ATOMIC_ACQUIRE);
    if (length > stats::kResponseCapacity) length = stats::kResponseCapacity;
    response.assign(channel->response, length);
    if (channel->status != 0) {
      // The answer names the problem ("scan failed: thread 12 did not stop..."); show that.
      const nlohmann::json answer = nlohmann::json::parse(response, nullptr, false);
      if (answer.is_object() && answer.contains("error") && answer["error"].is_string())
        error = answer["error"].get<std::string>();
      else
        error = "the process answered with an error (" + std::to_string(channel->status) + ")";
    } else if (render && response.size() >= sizeof(report::kRawDumpMagic) &&
               std::memcmp(response.data(), &report::kRawDumpMagic, sizeof(report::kRawDumpMagic)) == 0) {
      // The process sends facts, not names: the report is symbolized and rendered here, on the
      // reader's side, so the traced process never loads libdw (report/raw_dump.h).
      report::RawReport dump;
      std::string problem;
      if (!report::parse_raw_dump(response, dump, problem)) {
        error = "the process sent " + problem;
      } else {
        analysis::ModuleSymbolizer symbolizer;
        response = analysis::render_json(dump, symbolizer);
      }
    }
  } else if (job_stopped) {
    error = "the process was stopped before answering (continue it with kill -CONT " + std::to_string(info().pid) + ")";
  } else {
    error = info().producer_alive ? "the process did not answer within " + std::to_string(timeout_ms / 1000) + " s"
                                  : "the process exited before answering";
  }
  __atomic_store_n(&channel->owner_pid, 0u, __ATOMIC_RELEASE);
  return answered && error.empty();
}

std::vector<SegmentFile> SegmentReader::list_files() {
  std::vector<SegmentFile> files;
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return files;
  while (dirent* entry = readdir(dir)) {
    const pid_t pid = stats::segment_name_pid(entry->d_name);
    if (pid > 0) files.push_back({pid, std::string(stats::kSegmentDirectory) + entry->d_name});
  }
  closedir(dir);
  std::sort(files.begin(), files.end(), [](const SegmentFile& a, const SegmentFile& b) {
    return a.pid != b.pid ? a.pid < b.pid : a.path < b.path;
  });
  return files;
}

std::vector<pid_t> SegmentReader::list_segments() {
  std::vector<pid_t> pids;
  for (const SegmentFile& file : list_files()) {
    if (pids.empty() || pids.back() != file.pid) pids.push_back(file.pid);
  }
  return pids;
}

bool SegmentReader::remove_if_remains(const SegmentFile& file) {
  const int fd = ::open(file.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return false;
  struct stat st;
  stats::SegmentHeader header;
  bool remains = false;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_uid == getuid() || geteuid() == 0)) {
    const bool whole = pread(fd, &header, sizeof(header), 0) == static_cast<ssize_t>(sizeof(header));
    const bool short_file = static_cast<size_t>(st.st_size) < sizeof(header);
    remains = (whole || short_file) && stats::segment_is_remains(whole ? &header : nullptr, st, realtime_ns(),
                                                                 stats::own_pid_namespace(), file.path.c_str());
  }
  ::close(fd);
  return remains && unlink(file.path.c_str()) == 0;
}

}  // namespace heapkeeper::view
