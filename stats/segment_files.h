// Segment files in /dev/shm: their names, the identity of the process that made one, and when
// one may be removed. Rules shared by the producer (stats/publisher.cpp) and the readers
// (viewer/segment_reader.cpp), so both ends agree on them.
//
// /dev/shm is writable by every user. A name made of the pid alone could be created in advance by
// anyone, disabling live stats for a process that will get that pid, or forging its figures for
// a reader that trusts the name. So each name carries 64 random bits after the pid
// (heapkeeper.<pid>.<16 hex digits>), the producer creates it with O_EXCL, readers find a
// process's segments by listing the directory, and a reader trusts a segment only when its owner
// is the process's owner (SegmentReader::open). Names of the older form heapkeeper.<pid> are still
// listed, so `heapkeeper list` can say what they are.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "allocator/bounded_text.h"
#include "stats/shm_layout.h"

namespace heapkeeper::stats {

inline constexpr const char* kSegmentDirectory = "/dev/shm/";
inline constexpr const char* kSegmentPrefix = "heapkeeper.";
// A heartbeat younger than this means a live producer, wherever it runs: it publishes twice a second.
inline constexpr uint64_t kStaleAfterNs = 10'000'000'000ull;
// A process makes its segment only after running this long (stats/publisher.cpp); a reader asked
// about a younger process waits for it (SegmentReader::open).
inline constexpr uint32_t kFirstPublishDelayMs = 200;
// The publisher thread's name (as /proc shows it, 15 characters at most), and its name while it
// waits a HEAPKEEPER_STATS_DELAY longer than kLongDelayMs to make the segment: a reader waits for
// the first, and says at once that the second's segment is not made yet.
inline constexpr const char* kPublisherThreadName = "heapkeeper-stat";
inline constexpr const char* kWaitingPublisherThreadName = "heapkeeper-wait";
inline constexpr uint32_t kLongDelayMs = 10000;

// "heapkeeper.<pid>.<nonce as 16 hex digits>".
inline std::string segment_name(pid_t pid, uint64_t nonce) {
  char name[64];
  std::snprintf(name, sizeof(name), "%s%d.%016llx", kSegmentPrefix, static_cast<int>(pid),
                static_cast<unsigned long long>(nonce));
  return name;
}

// The pid a directory entry's name is a segment of, or 0 when it is no segment name.
inline pid_t segment_name_pid(const char* name) {
  const size_t prefix = std::strlen(kSegmentPrefix);
  if (std::strncmp(name, kSegmentPrefix, prefix) != 0) return 0;
  const char* digits = name + prefix;
  if (*digits < '0' || *digits > '9') return 0;
  char* end = nullptr;
  const long pid = std::strtol(digits, &end, 10);
  if (pid <= 0 || pid > 0x3fffffff || end == nullptr) return 0;
  if (*end == '\0') return static_cast<pid_t>(pid);  // the older form
  if (*end != '.' || std::strlen(end + 1) != 16) return 0;
  for (const char* c = end + 1; *c != '\0'; ++c) {
    if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) return 0;
  }
  return static_cast<pid_t>(pid);
}

struct PidNamespace {
  uint64_t device = 0, inode = 0;
  bool operator==(const PidNamespace&) const = default;
};

// The calling process's pid namespace; zeroes when /proc does not say.
inline PidNamespace own_pid_namespace() {
  struct stat st;
  if (stat("/proc/self/ns/pid", &st) != 0) return {};
  return {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

// The low 16 bits of a segment name's nonce: a tag of the producer's pid namespace, the rest random.
// Set before the header is written, it tells an unfinished file named after this pid whose
// producer shares this namespace (this very process before it exec'd, or a dead earlier holder
// of the pid: remains either way) from one a process of another namespace sharing /dev/shm may be
// making at this moment (1 in 65,536 namespaces share a tag).
inline constexpr uint64_t kNamespaceTagMask = 0xffff;
inline uint64_t namespace_tag(const PidNamespace& ns) {
  uint64_t h = (ns.device * 0x9e3779b97f4a7c15ull) ^ (ns.inode * 0xc2b2ae3d27d4eb4full);
  h ^= h >> 29;
  return h & kNamespaceTagMask;
}

// The nonce of a segment name ("heapkeeper.<pid>.<16 hex digits>"); false for the older form.
inline bool segment_name_nonce(const char* name, uint64_t& nonce) {
  const char* dot = std::strrchr(name, '.');
  if (dot == nullptr || segment_name_pid(name) == 0 || std::strlen(dot + 1) != 16) return false;
  nonce = std::strtoull(dot + 1, nullptr, 16);
  return true;
}

inline PidNamespace namespace_of(const SegmentHeader& header) {
  return {header.pid_namespace_device, header.pid_namespace_inode};
}

// Field 22 of /proc/PID/stat (start time in clock ticks since boot), 0 if unreadable: with the
// pid, it tells the producer from a later process that reused its pid. One read() into a buffer on
// the stack, not stdio, and the path made without snprintf: a traced process asks at exit
// (stats/publisher.cpp), where stdio's FILE and buffer were the first allocations of their sizes in
// the internal arena, and fopen, snprintf and strtoull mapped pages of libc's code and data that a
// short process otherwise never touches (issue #12). /proc makes the whole file in one read.
inline uint64_t process_start_ticks(pid_t pid) {
  char path[64];
  heapkeeper::alloc::BoundedText(path, sizeof(path)).text("/proc/").number(static_cast<uint64_t>(pid)).text("/stat");
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char text[1024];
  ssize_t n = 0;
  do {
    n = ::read(fd, text, sizeof(text) - 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return 0;
  text[n] = '\0';
  const char* close = std::strrchr(text, ')');
  if (close == nullptr) return 0;
  const char* p = close + 2;
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return 0;
    ++p;
  }
  return heapkeeper::alloc::leading_decimal(p);
}

// How long process `pid` has run, in milliseconds (from its start time and the boot-time clock,
// which /proc/uptime reads too: read from the vDSO, it costs a process leaving no system call); -1
// if it is not there or /proc does not say.
inline int64_t process_age_ms(pid_t pid) {
  const uint64_t start_ticks = process_start_ticks(pid);
  timespec since_boot{};
  if (start_ticks == 0 || clock_gettime(CLOCK_BOOTTIME, &since_boot) != 0) return -1;
  const auto ticks_per_second = static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
  const uint64_t now_ms =
      static_cast<uint64_t>(since_boot.tv_sec) * 1000 + static_cast<uint64_t>(since_boot.tv_nsec) / 1000000;
  return static_cast<int64_t>(now_ms) - static_cast<int64_t>(start_ticks * 1000 / ticks_per_second);
}

// Whether the process that made the segment still runs: same pid namespace as ours, the pid
// exists, and it started when the producer did.
inline bool producer_runs(const SegmentHeader& header, const PidNamespace& ours) {
  if (!(namespace_of(header) == ours) || header.producer_pid <= 0) return false;
  const uint64_t ticks = process_start_ticks(header.producer_pid);
  return ticks != 0 && (header.process_start_ticks == 0 || ticks == header.process_start_ticks);
}

// A header its producer has not finished writing. The producer stores the magic number last
// (stats/publisher.cpp), so a file without one is being created, or is what a process left that
// died or exec'd while creating it; libraries before that order stored the magic first and the
// state last, so a header with neither a state nor a heartbeat is unfinished too.
inline bool header_unfinished(const SegmentHeader& header) {
  return header.magic == 0 || (header.magic == kSegmentMagic && header.state == 0 && header.heartbeat_ns == 0);
}

// Whether process `pid` still maps the segment file `path` (as its producer does from creating it
// to exit): 1 yes, 0 no, -1 unknown (its maps unreadable). A process that exec'd a program not run
// under heapkeeper keeps its pid and start time but maps the file no more.
inline int process_maps_file(pid_t pid, const char* path) {
  char maps_path[64];
  std::snprintf(maps_path, sizeof(maps_path), "/proc/%d/maps", static_cast<int>(pid));
  FILE* file = std::fopen(maps_path, "re");
  if (file == nullptr) return -1;
  char line[4096];
  int found = 0;
  bool read_any = false;
  const size_t path_length = std::strlen(path);
  while (std::fgets(line, sizeof(line), file) != nullptr) {
    read_any = true;
    const char* name = std::strchr(line, '/');
    if (name != nullptr && std::strncmp(name, path, path_length) == 0 &&
        (name[path_length] == '\n' || name[path_length] == '\0')) {
      found = 1;
      break;
    }
  }
  std::fclose(file);
  return read_any ? found : -1;
}

// Whether a segment file may be removed as the remains of a dead process. `header` is null when
// the file is too short to hold one (a producer killed while creating it); such a file, and one
// whose header is unfinished, is remains once nobody has written it for 10 s. Never a segment whose
// producer beat in the last 10 s (it may live in another pid namespace sharing /dev/shm), never
// one from another pid namespace (its pid means nothing here), never one whose producer runs and
// still maps it.
inline bool segment_is_remains(const SegmentHeader* header, const struct stat& st, uint64_t now_ns,
                               const PidNamespace& ours, const char* path) {
  if (header == nullptr || header_unfinished(*header)) {
    const uint64_t modified_ns =
        static_cast<uint64_t>(st.st_mtim.tv_sec) * 1000000000ull + static_cast<uint64_t>(st.st_mtim.tv_nsec);
    return modified_ns + kStaleAfterNs < now_ns;
  }
  // Another layout (another heapkeeper's) places the fields elsewhere: not ours to judge.
  if (header->magic != kSegmentMagic || header->version != kLayoutVersion) return false;
  if (header->heartbeat_ns + kStaleAfterNs >= now_ns) return false;
  if (!(namespace_of(*header) == ours)) return false;
  return !producer_runs(*header, ours) || process_maps_file(header->producer_pid, path) == 0;
}

}  // namespace heapkeeper::stats
