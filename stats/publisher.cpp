// Implementation of the stats publisher (see publisher.h).
//
// The segment is created with Boost.Interprocess (shared_memory_object, mapped_region), mode 0600,
// and its whole size is reserved with posix_fallocate: on tmpfs a sparse segment would be filled
// page by page, and a full /dev/shm would then kill the program with SIGBUS on the first write
// instead of failing here. At exit the final snapshot is published with the state "exited" and
// the name is removed; a viewer that has it mapped keeps the final figures.
#include "stats/publisher.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>

#include "allocator/address_reservation.h"
#include "allocator/config.h"
#include "allocator/diagnostics.h"
#include "allocator/engine.h"
#include "allocator/errno_kept.h"
#include "allocator/heap_trimmer.h"
#include "allocator/internal_mappings.h"
#include "allocator/monotonic_clock.h"
#include "allocator/own_memory.h"
#include "allocator/private_heap.h"
#include "allocator/quiet_fork.h"
#include "allocator/raw_syscall.h"
#include "allocator/syscall_filter.h"
#include "allocator/thread_credentials.h"
#include "allocator/thread_registry.h"
#include "collector/collector.h"
#include "collector/why_answer.h"
#include "report/exit_report.h"
#include "report/json_text.h"
#include "report/read_file.h"
#include "stats/segment_files.h"
#include "stats/shm_layout.h"
#include "stats/snapshot_builder.h"

namespace bip = boost::interprocess;

namespace heapkeeper::stats {
namespace {

// Removes the segment file called `name` from /dev/shm, as shm_unlink would: the path built on the
// stack and unlinked with a raw system call, so that every path that removes one shares it, _exit's
// too, which must stay async-signal-safe and allocation-free (Boost's remove makes a std::string).
void segment_file_path(const char* name, char (&path)[96]) noexcept {
  size_t length = 0;
  for (const char* c = kSegmentDirectory; *c != '\0'; ++c) path[length++] = *c;
  for (size_t i = 0; name[i] != '\0' && length + 1 < sizeof(path); ++i) path[length++] = name[i];
  path[length] = '\0';
}

void remove_segment_file(const char* name) noexcept {
  char path[96];
  segment_file_path(name, path);
  alloc::raw_syscall(SYS_unlink, reinterpret_cast<long>(path));
}

constexpr uint32_t kPublishIntervalMs = 500;
constexpr uint32_t kForkedChildPublishDelayMs = 1000;

struct Publisher {
  // A process makes its segment only once it has run this long: creating and sizing 5 MiB in
  // /dev/shm costs a few milliseconds, which a build's thousands of short processes should not pay,
  // and a process that execs or exits before then leaves no segment behind.
  // HEAPKEEPER_STATS_DELAY sets it: 0 for a segment at once (a short process to watch), longer to
  // keep a run's many short processes out of `heapkeeper list`.
  uint32_t start_delay_ms = kFirstPublishDelayMs;
  // Written while `creating` is set, read by the exit paths once it is clear: a fixed array.
  char name[64] = {};
  // The process this publisher is for. A child made by a raw clone system call runs no fork
  // handler, so it still holds its parent's publisher: at its exit it must leave the parent's
  // segment alone (it published into it and unlinked it, and the parent vanished from `list`).
  pid_t owner_pid = getpid();
  std::unique_ptr<bip::mapped_region> region;
  SharedSegment* segment = nullptr;
  dev_t file_device = 0;  // the segment's file, as made: what hand_segment_over may change the owner of
  ino_t file_inode = 0;
  // Set while the publisher thread makes the segment (from just before the file is created until
  // the segment is published here or given up), and `exiting` by the exit paths: a process that
  // exits meanwhile waits for the segment and removes it (or, once exiting is set, none is begun).
  // Each sets its own flag and then reads the other's (sequentially consistent), so at least one
  // sees the other's: an exit in the middle left the unfinished file behind for ever, 1 exit in
  // 700 at the default delay and most with HEAPKEEPER_STATS_DELAY=0 and a process exiting at once.
  std::atomic<bool> creating{false};
  std::atomic<bool> exiting{false};
  // Set by the exit handler once the file is removed: an _exit after it (HEAPKEEPER_EXITCODE's,
  // collector.cpp) has nothing left to remove.
  std::atomic<bool> removed{false};
  // Set when the segment's file was found cut short (segment_usable): never used again.
  std::atomic<bool> given_up{false};
  std::unique_ptr<RawSnapshot> scratch;  // built here, then copied under the seqlock
  // Made with the segment, like the scratch snapshot: its 28 KiB time series, zeroed, were eight
  // pages every process touched at start-up, however short its life (issue #12).
  std::unique_ptr<SnapshotBuilder> builder;
  std::mutex publish_mutex;  // the publisher thread and the exit handler both publish
  uint32_t handled_request = 0;
  bool published_watched = false;  // the last snapshot has the site and leak tables
  uint64_t start_ns = 0;
  uint64_t due_monotonic_ns = 0;  // when the segment is made: start_delay_ms after start()
};

Publisher* g_publisher = nullptr;

uint64_t realtime_ns() {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000000ull + static_cast<uint64_t>(now.tv_nsec);
}

std::string read_command_line() {
  std::string text = report::read_whole_file("/proc/thread-self/cmdline");
  for (char& c : text) {
    if (c == '\0') c = ' ';
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

void copy_text(char* out, size_t capacity, const std::string& text) {
  size_t n = std::min(capacity - 1, text.size());
  std::memcpy(out, text.data(), n);
  out[n] = '\0';
}

// Processes killed by a signal never reach their exit handler, and a process that execs leaves the
// segment of the program it was, so their segments stay behind. Each new producer removes its
// uid's that are certainly remains (segment_is_remains: no heartbeat for 10 s, our pid namespace,
// producer gone), so /dev/shm cannot fill up with a restarted service's remains; and at once any
// whose header names this very process (pid, start time, namespace): it has not made its own yet,
// so that one is the program this process was before it exec'd. With `previous_image_only`, just
// those (an image exiting before it made its own segment).
void remove_stale_segments(bool previous_image_only) {
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return;
  const pid_t self = getpid();
  // Read from /proc at the first segment named after this pid, not before: most processes exit
  // having found none, and listing /dev/shm costs them less than reading /proc/PID/stat. The
  // clock and the pid namespace (a look-up in /proc too) at the first segment to judge.
  uint64_t self_start_ticks = 0;
  bool start_read = false;
  uint64_t now = 0;
  PidNamespace ours{};
  bool context_read = false;
  while (dirent* entry = readdir(dir)) {
    const pid_t named = segment_name_pid(entry->d_name);
    if (named == 0 || (previous_image_only && named != self)) continue;
    if (!context_read) {
      now = realtime_ns();
      ours = own_pid_namespace();
      context_read = true;
    }
    if (named == self && !start_read) {
      self_start_ticks = process_start_ticks(self);
      start_read = true;
    }
    const std::string path = std::string(kSegmentDirectory) + entry->d_name;
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) continue;
    struct stat st;
    SegmentHeader header;
    bool remains = false;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == getuid()) {
      const bool whole = pread(fd, &header, sizeof(header), 0) == static_cast<ssize_t>(sizeof(header));
      const bool short_file = static_cast<size_t>(st.st_size) < sizeof(header);
      const bool before_exec = whole && !header_unfinished(header) && header.magic == kSegmentMagic &&
                               header.version == kLayoutVersion && header.producer_pid == self &&
                               self_start_ticks != 0 && header.process_start_ticks == self_start_ticks &&
                               namespace_of(header) == ours;
      // Unfinished, named after this pid in this namespace: the program this process was, which
      // exec'd while its publisher thread was making it (HEAPKEEPER_STATS_DELAY=0 and a shell's
      // `exec`: 290 of 300 runs left one, 4.5 MB of RAM each), or a dead earlier holder of the pid.
      uint64_t nonce = 0;
      const bool own_unfinished = named == self && (short_file || (whole && header_unfinished(header))) &&
                                  segment_name_nonce(entry->d_name, nonce) &&
                                  (nonce & kNamespaceTagMask) == namespace_tag(ours);
      remains = before_exec || own_unfinished ||
                (!previous_image_only && (whole || short_file) &&
                 segment_is_remains(whole ? &header : nullptr, st, now, ours, path.c_str()));
    }
    close(fd);
    if (remains) unlink(path.c_str());
  }
  closedir(dir);
}

// 64 unpredictable bits for the segment's name. getrandom does not block once the kernel's pool
// is ready (long before any program runs); if it fails, the clock and addresses ASLR placed.
uint64_t name_nonce() {
  uint64_t nonce = 0;
  if (getrandom(&nonce, sizeof(nonce), GRND_NONBLOCK) == static_cast<ssize_t>(sizeof(nonce))) return nonce;
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  nonce = static_cast<uint64_t>(now.tv_nsec) * 0x9e3779b97f4a7c15ull ^ reinterpret_cast<uintptr_t>(&now) ^
          (reinterpret_cast<uintptr_t>(&name_nonce) << 17);
  return nonce ^ (static_cast<uint64_t>(getpid()) << 40);
}

// Creates the segment's file under a fresh name (create_only is O_CREAT|O_EXCL: nobody's file is
// ever opened in its place). A name already taken is tried again with new random bits.
bip::shared_memory_object create_exclusively(Publisher& p) {
  for (int attempt = 0;; ++attempt) {
    const uint64_t nonce = (name_nonce() & ~kNamespaceTagMask) | namespace_tag(own_pid_namespace());
    std::snprintf(p.name, sizeof(p.name), "%s", segment_name(getpid(), nonce).c_str());
    try {
      return bip::shared_memory_object(bip::create_only, p.name, bip::read_write, bip::permissions(0600));
    } catch (const bip::interprocess_exception& error) {
      if (error.get_error_code() != bip::already_exists_error || attempt >= 3) throw;
    }
  }
}

// Where the segment will be mapped: address space reserved at start-up (PROT_NONE, nothing
// committed), before the program runs, as the private heap's is. Mapped wherever the kernel chose
// when the publisher got to it, 200 ms in, the segment took address space the program was about to
// be given: the place a library it had just closed would have been loaded again, so a dlopen after
// a dlclose put the library elsewhere than without heapkeeper (integration.unloaded_library, once
// the segment shrank to 4.5 MB and fitted that hole). The range stays the segment's for the
// process's life (the region is never unmapped before exit): a forked child maps its own segment
// over the same range, over its copy of the parent's mapping or reservation.
void* g_segment_address = nullptr;

size_t segment_mapping_bytes() {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return (sizeof(SharedSegment) + page - 1) / page * page;
}

// The reservation's name in /proc/PID/maps ("[anon:heapkeeper segment]"), which no mapping the
// program makes in its place carries.
constexpr char kReservationName[] = "heapkeeper segment";
bool g_reservation_named = false;

void reserve_segment_address() {
  // Under an address-space limit (ulimit -v) the program keeps its room until the segment is made,
  // which a process that ends within the delay never does.
  if (g_segment_address != nullptr || alloc::address_space_left() != 0) return;
  void* p = mmap(nullptr, segment_mapping_bytes(), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return;  // mapped wherever the kernel chooses, later
  // Named where the kernel can (5.17 and later, built with CONFIG_ANON_VMA_NAME); without the name
  // only its protection and size tell it from a mapping the program made in its place.
  g_reservation_named = prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, p, segment_mapping_bytes(), kReservationName) == 0;
  g_segment_address = p;
}

// Whether the reserved range is still ours, whole: a program may unmap what it did not map (a
// sandbox closing every mapping it does not know, a checkpointing tool) and map its own memory
// there, which MAP_FIXED would then replace under it (an adversarial tester's program found its
// data turned into the segment's). In /proc/self/maps, one mapping like the reservation (named so,
// where the kernel names mappings) must cover the range, or in a forked child its copy of the
// parent's segment. Not covered: a program racing us to replace it between this look and the
// mapping, or, without names, one that put a mapping without access of its own there.
bool reservation_intact() {
  const auto start = reinterpret_cast<uintptr_t>(g_segment_address);
  const uintptr_t end = start + segment_mapping_bytes();
  // By our own thread id: once the main thread has called pthread_exit, /proc/self/maps reads empty.
  const std::string maps = report::read_whole_file("/proc/thread-self/maps");
  const std::string named = std::string("[anon:") + kReservationName + "]";
  std::string_view rest = maps;
  while (!rest.empty()) {
    const size_t newline = rest.find('\n');
    const std::string line(rest.substr(0, newline));
    rest = newline == std::string_view::npos ? std::string_view() : rest.substr(newline + 1);
    unsigned long low = 0, high = 0;
    char permissions[8] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %7s", &low, &high, permissions) != 3 || low > start || high < end) continue;
    // The reservation (unnamed: an anonymous mapping without access, no path, device 00:00), or
    // in a forked child its copy of the parent's segment, mapped over it.
    const bool anonymous = line.find(" 00:00 0") != std::string::npos && line.find_first_of("/[") == std::string::npos;
    const bool reservation = std::strcmp(permissions, "---p") == 0 &&
                             (g_reservation_named ? line.find(named) != std::string::npos : anonymous);
    const bool parents_segment =
        std::strcmp(permissions, "rw-s") == 0 && line.find(" /dev/shm/heapkeeper.") != std::string::npos;
    if (reservation || parents_segment) return true;
  }
  return false;
}

// Made by create_segment from the moment it commits to making the segment: clears `creating`
// however it returns, after the segment is published or its file removed.
struct CreatingFlag {
  Publisher& p;
  ~CreatingFlag() { p.creating.store(false, std::memory_order_seq_cst); }
};

bool create_segment(Publisher& p) {
  // Asked now, while nothing is at stake and before `creating` is set, so that an _exit later
  // knows without asking (leave_at_immediate_exit may make no system call before it knows).
  alloc::syscall_filter_installed();
  p.creating.store(true, std::memory_order_seq_cst);
  const CreatingFlag creating{p};
  if (p.exiting.load(std::memory_order_seq_cst)) return false;  // the process is exiting: none begun
  remove_stale_segments(false);
  bool created = false;
  try {
    bip::shared_memory_object shm = create_exclusively(p);
    created = true;
    const int fd = shm.get_mapping_handle().handle;
    struct stat made {};
    if (fstat(fd, &made) == 0) {
      p.file_device = made.st_dev;
      p.file_inode = made.st_ino;
    }
    const int reserved = posix_fallocate(fd, 0, sizeof(SharedSegment));
    if (reserved != 0) {
      remove_segment_file(p.name);
      alloc::DiagnosticLine()
          .text("live stats disabled: cannot reserve ")
          .bytes(sizeof(SharedSegment))
          .text(" in /dev/shm (")
          .text(std::strerror(reserved))
          .text("); the program runs on")
          .emit();
      return false;
    }
    // Over the reserved range (MAP_FIXED replaces only our own reservation, checked, or in a forked
    // child our copy of the parent's segment), else wherever the kernel chooses.
    if (g_segment_address != nullptr && !reservation_intact()) g_segment_address = nullptr;
    p.region = g_segment_address != nullptr
                   ? std::make_unique<bip::mapped_region>(shm, bip::read_write, 0, sizeof(SharedSegment),
                                                          g_segment_address, MAP_FIXED)
                   : std::make_unique<bip::mapped_region>(shm, bip::read_write);
  } catch (const bip::interprocess_exception& error) {
    // What the range holds after a failed mapping is not known to be ours any more: a forked
    // child maps its segment wherever the kernel chooses.
    g_segment_address = nullptr;
    if (created) remove_segment_file(p.name);
    alloc::DiagnosticLine()
        .text("live stats disabled: cannot create /dev/shm/")
        .text(p.name)
        .text(": ")
        .text(error.what())
        .text("; the program runs on")
        .emit();
    return false;
  }
  // Never a root: the segment names blocks (the largest, the retained), which would make a leaked
  // one look reachable once file mappings were scanned (root_scan.cpp). The registration outlives
  // the mapping in a forked child, whose copy of the parent's is replaced by its own or left as it is.
  alloc::unregister_internal_mapping(p.region->get_address());  // the parent's, where it was
  alloc::register_internal_mapping(p.region->get_address(), p.region->get_size());
  auto* segment = static_cast<SharedSegment*>(p.region->get_address());
  SegmentHeader& h = segment->header;
  // Every field before the magic number, the magic last: a reader (or a later producer judging
  // remains) that finds no magic knows the header is unfinished, whatever else it holds.
  h.version = kLayoutVersion;
  h.header_size = sizeof(SegmentHeader);
  h.segment_size = sizeof(SharedSegment);
  h.producer_uid = getuid();
  h.producer_pid = getpid();
  h.start_time_ns = p.start_ns;
  h.process_start_ticks = process_start_ticks(getpid());
  const PidNamespace ns = own_pid_namespace();
  h.pid_namespace_device = ns.device;
  h.pid_namespace_inode = ns.inode;
  h.publish_interval_ms = kPublishIntervalMs;
  char exe[256] = {};
  ssize_t n = readlink("/proc/thread-self/exe", exe, sizeof(exe) - 1);
  if (n > 0) exe[n] = '\0';
  copy_text(h.program, sizeof(h.program), exe);
  copy_text(h.command_line, sizeof(h.command_line), read_command_line());
  __atomic_store_n(&h.state, static_cast<uint32_t>(ProducerState::kRunning), __ATOMIC_RELEASE);
  __atomic_store_n(&h.magic, kSegmentMagic, __ATOMIC_RELEASE);
  __atomic_store_n(&p.segment, segment, __ATOMIC_RELEASE);  // the exit handler may look from another thread
  return true;
}

// Whether the segment (made) may be used: false once its file no longer reaches the mapping's end.
// Any process of the user may truncate a file in /dev/shm (a script emptying the directory, a
// reader gone wrong), and then a load or store past the file's new end raises SIGBUS in this
// process: the program's signal, which killed it (an adversarial tester's `truncate -s 0`). So
// before each round of use the segment's last byte is read through process_vm_readv, which fails
// where a load would fault; a segment cut short is given up for good (its mapping stays, unused, so
// that no thread holding its address meets an unmapped range), its file is removed if the name
// still holds it, and the program runs on. Under a seccomp filter (no such read) the segment is
// taken as whole. A truncation between this look and the use that follows (a publish, at most a
// few milliseconds), or while the segment is being made (create_segment's first stores), still
// faults.
bool segment_usable(Publisher& p) noexcept {
  const SharedSegment* segment = __atomic_load_n(&p.segment, __ATOMIC_ACQUIRE);
  if (segment == nullptr || p.given_up.load(std::memory_order_acquire)) return false;
  bool cut = false;
  {
    const alloc::ErrnoKept errno_kept;
    errno = 0;
    unsigned char last = 0;
    // Only EFAULT says the page is gone: a kernel or sandbox without the call (ENOSYS, EPERM) says
    // nothing about the file, and the segment is then taken as whole.
    cut = !alloc::syscall_filter_installed() &&
          !alloc::read_own_memory(reinterpret_cast<uintptr_t>(segment) + sizeof(SharedSegment) - 1, &last, 1) &&
          errno == EFAULT;
  }
  if (!cut) return true;
  if (p.given_up.exchange(true, std::memory_order_acq_rel)) return false;  // another thread said so
  char path[96];
  segment_file_path(p.name, path);
  struct stat st {};
  if (alloc::raw_syscall(SYS_stat, reinterpret_cast<long>(path), reinterpret_cast<long>(&st)) == 0 &&
      st.st_dev == p.file_device && st.st_ino == p.file_inode)
    remove_segment_file(p.name);
  p.removed.store(true, std::memory_order_release);
  alloc::DiagnosticLine()
      .text("live stats stopped: ")
      .text(path)
      .text(" was truncated by another process; the program runs on")
      .emit();
  return false;
}

// Whether a reader that looks at stacks left its heartbeat in the last 30 s.
bool reader_watching(const Publisher& p, uint64_t now) {
  const uint64_t heartbeat = __atomic_load_n(&p.segment->channel.reader_heartbeat_ns, __ATOMIC_ACQUIRE);
  return heartbeat != 0 && heartbeat + 30'000'000'000ull > now;
}

void publish(Publisher& p) {
  std::lock_guard<std::mutex> lock(p.publish_mutex);
  const uint64_t now = realtime_ns();
  const bool watched = reader_watching(p, now);
  p.builder->build(*p.scratch, now, p.start_ns, watched);
  p.published_watched = watched;
  publish_snapshot(*p.segment, *p.scratch);
  __atomic_store_n(&p.segment->header.heartbeat_ns, now, __ATOMIC_RELEASE);
}

// {"error": "<message>"}, escaped by hand: the library builds no JSON (the reader renders reports).
std::string error_json(const std::string& message) {
  std::string text = "{\"error\": \"";
  for (char c : report::json_text(message)) {
    if (c == '"' || c == '\\') {
      text += '\\';
      text += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
      text += escaped;
    } else {
      text += c;
    }
  }
  return text + "\"}";
}

// `heapkeeper trim`: purges every arena now, whatever the trimming policy, and says what it gave
// back. RSS before and after is the reader's to measure (/proc is read outside the process).
std::string trim_answer() {
  const alloc::HeapFigures before = alloc::private_heap().figures();
  const alloc::PurgeResult purge = alloc::purge_all_arenas();
  const alloc::HeapFigures after = alloc::private_heap().figures();
  auto figures = [](const alloc::HeapFigures& f) {
    char text[320];
    std::snprintf(
        text, sizeof text,
        "{\"heap_resident_bytes\": %llu, \"dirty_bytes\": %llu, \"muzzy_bytes\": %llu, "
        "\"internal_dirty_bytes\": %llu, \"internal_muzzy_bytes\": %llu}",
        static_cast<unsigned long long>(f.resident_bytes), static_cast<unsigned long long>(f.tracked.dirty_bytes),
        static_cast<unsigned long long>(f.tracked.muzzy_bytes), static_cast<unsigned long long>(f.internal.dirty_bytes),
        static_cast<unsigned long long>(f.internal.muzzy_bytes));
    return std::string(text);
  };
  char head[96];
  std::snprintf(head, sizeof head, "{\"purged\": %s, \"returned_bytes\": %llu, ", purge.ok ? "true" : "false",
                static_cast<unsigned long long>(purge.returned_bytes));
  return head + std::string("\"before\": ") + figures(before) + ", \"after\": " + figures(after) + "}";
}

// Builds the answer to one request. May throw (allocation, symbolizing, JSON): answer() catches.
std::string build_answer(Publisher& p, Command command, int& status) {
  std::string response;
  switch (command) {
    case Command::kScan:
    case Command::kCollect:
    case Command::kReport: {
      const bool reclaim = command == Command::kCollect;
      collect::ScanReport scan = collect::scan_now(false, 0, nullptr, 0, reclaim);
      if (reclaim && scan.ok) scan = collect::scan_now(false, 0, nullptr, 0, true);  // second look frees them
      if (!scan.ok) {
        status = EAGAIN;
        response = error_json("scan failed: " + scan.failure);
      } else {
        // Facts only: the reader symbolizes and renders the report (report/raw_dump.h). The
        // argument "profile" adds what a profile shows: live sites split by thread.
        const uint32_t length =
            std::min(__atomic_load_n(&p.segment->channel.argument_length, __ATOMIC_ACQUIRE), kArgumentCapacity);
        const bool profile = command == Command::kReport &&
                             std::string_view(p.segment->channel.argument, length) == report::kProfileRequest;
        response = report::build_raw_dump(report::kWantJson | (profile ? report::kWantProfile : 0u));
      }
      publish(p);
      break;
    }
    case Command::kWhy: {
      // The argument is bounded and written before the request: copy it out first.
      const uint32_t length =
          std::min(__atomic_load_n(&p.segment->channel.argument_length, __ATOMIC_ACQUIRE), kArgumentCapacity);
      const std::string argument(p.segment->channel.argument, length);
      response = collect::build_why_answer(argument, status);  // raw facts (report/raw_why.h)
      publish(p);
      break;
    }
    case Command::kTrim: {
      response = trim_answer();
      publish(p);
      break;
    }
    default:
      status = EINVAL;
      response = error_json("unknown command");
  }
  return response;
}

void answer(Publisher& p, uint32_t request) {
  CommandChannel& c = p.segment->channel;
  const auto command = static_cast<Command>(__atomic_load_n(&c.command, __ATOMIC_ACQUIRE));
  int status = 0;
  std::string response;
  // The reader waits for an answer, and the program must never see what failed here: any
  // exception becomes an error answer (the static text needs no allocation to send).
  try {
    response = build_answer(p, command, status);
  } catch (const std::exception& error) {
    status = EIO;
    alloc::DiagnosticLine().text("answering a request failed: ").text(error.what()).emit();
  } catch (...) {
    status = EIO;
  }
  if (status == EIO) {
    static constexpr char kFailed[] =
        "{\"error\": \"heapkeeper could not build the answer (see the program's stderr)\"}";
    std::memcpy(c.response, kFailed, sizeof(kFailed) - 1);
    c.response_length = sizeof(kFailed) - 1;
    c.status = status;
    __atomic_store_n(&c.response_id, request, __ATOMIC_RELEASE);
    syscall(SYS_futex, &c.response_id, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
    return;
  }
  if (response.size() > kResponseCapacity) {
    status = E2BIG;
    response = "{\"error\": \"the report is larger than the response area; use HEAPKEEPER_REPORT\"}";
  }
  std::memcpy(c.response, response.data(), response.size());
  c.response_length = static_cast<uint32_t>(response.size());
  c.status = status;
  __atomic_store_n(&c.response_id, request, __ATOMIC_RELEASE);
  syscall(SYS_futex, &c.response_id, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

void publisher_thread() {
  Publisher& p = *g_publisher;
  // Started when the delay is over, or sooner when the program went to wait (a sleep, a poll):
  // the segment is made once the process has run the delay all the same.
  // Ended early (and started again: engine.h's pause_internal_threads), it goes on where it was.
  if (!alloc::internal_sleep_until(p.due_monotonic_ns)) return;
  // Named for its wait by start(); a reader finds it by this name once it is on its way.
  if (p.start_delay_ms > kLongDelayMs) pthread_setname_np(pthread_self(), kPublisherThreadName);
  // Made only now: a process that ends before the delay pays nothing for 5 MiB it never uses.
  if (p.scratch == nullptr)
    p.scratch = std::make_unique_for_overwrite<RawSnapshot>();  // the builder writes what it uses
  if (p.builder == nullptr) p.builder = std::make_unique<SnapshotBuilder>();
  if (__atomic_load_n(&p.segment, __ATOMIC_ACQUIRE) == nullptr && !create_segment(p)) return;
  uint64_t next_publish = 0;
  for (;;) {
    if (alloc::internal_threads_pausing()) return;
    if (!segment_usable(p)) return;
    const uint64_t now = realtime_ns();
    // A reader that starts watching wakes us (SegmentReader::snapshot): it gets the tables at
    // once rather than at the next interval.
    const bool watcher_arrived = !p.published_watched && reader_watching(p, now);
    if (now >= next_publish || watcher_arrived) {
      try {
        publish(p);
      } catch (const std::exception& error) {  // this snapshot is lost; the next one may succeed
        alloc::DiagnosticLine().text("publishing live stats failed: ").text(error.what()).emit();
      }
      next_publish = now + kPublishIntervalMs * 1000000ull;
    }
    const uint32_t request = __atomic_load_n(&p.segment->channel.request_id, __ATOMIC_ACQUIRE);
    if (request != p.handled_request) {
      p.handled_request = request;
      answer(p, request);
      continue;
    }
    const uint64_t wait_ns = next_publish > now ? next_publish - now : 0;
    timespec timeout{static_cast<time_t>(wait_ns / 1000000000ull), static_cast<long>(wait_ns % 1000000000ull)};
    // Shared futex (not PRIVATE): the waker is a reader in another process.
    {
      alloc::ParkedWait parked;
      syscall(SYS_futex, &p.segment->channel.request_id, FUTEX_WAIT, request, &timeout, nullptr, 0);
    }
    alloc::follow_thread_credentials();  // woken for it too (wake_publisher)
  }
}

// `later`: a forked child's publisher, started only when due (or when the child first waits in a
// wrapped call: allocator/engine.h): most children exec or exit within milliseconds, and a thread
// made for one is made, scheduled and torn down for nothing (a shell's or make's every command
// paid for one). A program's own image starts it at once: a process that blocks from its first
// milliseconds in a call no trigger sees (stdio's reads, waitpid, a condition variable) must still
// publish.
void start(Publisher& p, bool later) {
  p.start_ns = realtime_ns();
  p.due_monotonic_ns = alloc::monotonic_ns() + uint64_t{p.start_delay_ms} * 1000000ull;
  static constexpr char kFailure[] = "live stats disabled: could not start the publisher thread";
  // A thread that waits longer than a reader is patient for its segment is named for it: `stats`
  // then says at once that the segment is not made yet, even when the process's environment (and
  // its HEAPKEEPER_STATS_DELAY) cannot be read (another user's, not dumpable, overwritten by the
  // program's own argv, as perl's $0 does), instead of waiting 30 s for it and calling it untraced.
  const char* name = p.start_delay_ms > kLongDelayMs ? kWaitingPublisherThreadName : kPublisherThreadName;
  if (later) {
    alloc::start_internal_thread_later(publisher_thread, name, p.start_delay_ms, kFailure);
  } else {
    alloc::start_internal_thread_or_say(publisher_thread, name, kFailure);
  }
}

// Waits while the publisher thread makes the segment, at most half a second (a starved publisher
// thread). System calls only (nanosleep): _exit's path is async-signal-safe.
void wait_for_creation(const Publisher& p) noexcept {
  for (int waited_ms = 0; waited_ms < 500 && p.creating.load(std::memory_order_seq_cst); ++waited_ms) {
    timespec pause{0, 1'000'000};
    alloc::raw_syscall(SYS_nanosleep, reinterpret_cast<long>(&pause), 0);
  }
}

// The exit paths' side of `creating`: no segment is begun after this, and one being made is
// waited for (at most half a second, a starved publisher thread), so that it is removed whole.
// System calls only (nanosleep): _exit's path is async-signal-safe.
void stop_creation(Publisher& p) noexcept {
  p.exiting.store(true, std::memory_order_seq_cst);
  wait_for_creation(p);
}

void at_exit() {
  Publisher* p = g_publisher;
  if (p == nullptr || p->owner_pid != getpid()) return;
  stop_creation(*p);
  if (__atomic_load_n(&p->segment, __ATOMIC_ACQUIRE) == nullptr) {
    // Still being made after the wait: unlink by the name it is using.
    if (p->creating.load(std::memory_order_acquire)) remove_segment_file(p->name);
    // This image ran too briefly to make a segment; if the program this process was before it
    // exec'd us made one, nobody else would remove it (a look at /dev/shm's names for our pid).
    remove_stale_segments(true);
    return;
  }
  if (!segment_usable(*p)) return;  // cut short, now or earlier: given up, its file removed
  try {
    publish(*p);
  } catch (const std::exception& error) {  // the segment is removed all the same
    alloc::DiagnosticLine().text("publishing the final live stats failed: ").text(error.what()).emit();
  }
  __atomic_store_n(&p->segment->header.state, static_cast<uint32_t>(ProducerState::kExited), __ATOMIC_RELEASE);
  remove_segment_file(p->name);
  p->removed.store(true, std::memory_order_release);
}

// Made without exceptions: under a tight `ulimit -v` the internal arena may have no room left for a
// Publisher at start-up, and then none for the std::bad_alloc either (__cxa_allocate_exception
// called std::terminate: `/bin/echo` aborted under `ulimit -v 14000`). The program runs on
// without live stats, saying so in one line.
Publisher* make_publisher() {
  auto* p = new (std::nothrow) Publisher();
  if (p == nullptr) alloc::DiagnosticLine().text("live stats disabled: no memory for the publisher").emit();
  return p;
}

// Ends the publisher thread's wait on its segment's request word, where a program thread sharing
// its credentials (allocator/thread_credentials.h) would otherwise wait for the next publish.
void wake_publisher() {
  Publisher* p = g_publisher;
  SharedSegment* segment = p != nullptr ? __atomic_load_n(&p->segment, __ATOMIC_ACQUIRE) : nullptr;
  if (segment == nullptr) return;
  alloc::raw_syscall(SYS_futex, reinterpret_cast<long>(&segment->channel.request_id), FUTEX_WAKE, INT32_MAX);
}

// allocator/thread_credentials.h's hand-over: the process's effective user or group changes (a
// daemon started as root dropping to its own user, setpriv, su), and the segment's file, made by
// the old one, goes to the new one. Otherwise nothing the process runs as could remove it at exit (in
// /dev/shm, sticky, only a file's owner may), and each such run left its 4.4 MiB of memory there
// until a later process of the old user swept it. Its header says the new owner too, as a reader
// requires. Not under a seccomp filter (these system calls might kill the process), nor for a
// file that is not the one made (replaced under the same name), nor without the right to (no
// CAP_CHOWN): then it stays as it was.
void hand_segment_over(uint32_t effective_uid, uint32_t effective_gid) {
  constexpr auto kKeep = static_cast<uint32_t>(-1);
  Publisher* p = g_publisher;
  // Not a vfork child's (it shares its parent's publisher; the segment is the parent's), nor under
  // a seccomp filter (checked first: the getpid is a system call too).
  if (p == nullptr || !alloc::syscall_filter_known_absent() || p->owner_pid != alloc::raw_syscall(SYS_getpid)) return;
  // A segment being made now (HEAPKEEPER_STATS_DELAY=0 and setpriv, which changes its ids at once)
  // is waited for, at most half a second: made by the old owner, it would be left to it.
  wait_for_creation(*p);
  SharedSegment* segment = __atomic_load_n(&p->segment, __ATOMIC_ACQUIRE);
  if (segment == nullptr || p->removed.load(std::memory_order_acquire) || !segment_usable(*p)) return;
  char path[96];
  segment_file_path(p->name, path);
  const long fd =
      alloc::raw_syscall(SYS_open, reinterpret_cast<long>(path), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return;
  struct stat st {};
  if (alloc::raw_syscall(SYS_fstat, fd, reinterpret_cast<long>(&st)) == 0 && S_ISREG(st.st_mode) &&
      st.st_dev == p->file_device && st.st_ino == p->file_inode &&
      ((effective_uid != kKeep && st.st_uid != effective_uid) ||
       (effective_gid != kKeep && st.st_gid != effective_gid)) &&
      alloc::raw_syscall(SYS_fchown, fd, effective_uid, effective_gid) == 0 && effective_uid != kKeep)
    __atomic_store_n(&segment->header.producer_uid, effective_uid, __ATOMIC_RELEASE);
  alloc::raw_syscall(SYS_close, fd);
}

}  // namespace

// Processes that end with _exit are common: dash's `sh -c`, a forked server worker, a program whose
// exit handlers must not run twice. Each left its 4.3 MiB file behind, for the next traced process
// of its user to remove once it had seen no heartbeat for 10 s.
void leave_at_immediate_exit() noexcept {
  // Memory only until it is certain there is a file to remove and no seccomp filter to kill the
  // process for a system call of ours: a program under an allow-list filter ends with _exit as it
  // would without heapkeeper (getpid here first killed it with SIGSYS). The filter state was read
  // when the segment was made (create_segment), and the wrapped prctl and syscall note a filter
  // installed since; one installed by the program's own inline assembly goes unseen.
  Publisher* p = g_publisher;
  if (p == nullptr || p->removed.load(std::memory_order_acquire)) return;
  // Unknown while no segment was ever begun (create_segment reads it first): then there is none to
  // remove, bar one begun at this very moment.
  if (!alloc::syscall_filter_known_absent()) return;
  // A vfork child shares the parent's publisher, as a raw clone's child does: not theirs to remove
  // (nor to stop: `exiting` is the parent's).
  if (p->owner_pid != alloc::raw_syscall(SYS_getpid)) return;
  stop_creation(*p);
  SharedSegment* segment = __atomic_load_n(&p->segment, __ATOMIC_ACQUIRE);
  if (segment != nullptr && !segment_usable(*p)) return;  // cut short: given up, its file removed
  // Still being made after the wait: removed by the name it uses, as at_exit does.
  if (segment == nullptr && !p->creating.load(std::memory_order_acquire)) return;
  if (segment != nullptr)
    __atomic_store_n(&segment->header.state, static_cast<uint32_t>(ProducerState::kExited), __ATOMIC_RELEASE);
  remove_segment_file(p->name);
}

void install() {
  if (!alloc::config().live_stats) return;
  reserve_segment_address();
  g_publisher = make_publisher();
  if (g_publisher == nullptr) return;
  alloc::add_internal_wake(wake_publisher);
  alloc::add_credentials_handover(hand_segment_over);
  if (alloc::config().stats_delay_ms >= 0)
    g_publisher->start_delay_ms = static_cast<uint32_t>(alloc::config().stats_delay_ms);
  start(*g_publisher, false);
  alloc::add_exit_handler(at_exit);
  alloc::add_fork_child_handler([] {
    // The child is a process of its own: its own segment and publisher; the parent's stays theirs.
    // The segment is made only once the child has lived a second: a child that execs (and gets
    // a fresh heapkeeper) or _exits before then would otherwise leave a segment behind.
    g_publisher = make_publisher();
    if (g_publisher == nullptr) return;
    const int64_t delay_ms = alloc::config().stats_delay_ms;
    g_publisher->start_delay_ms = delay_ms >= 0 ? static_cast<uint32_t>(delay_ms) : kForkedChildPublishDelayMs;
    start(*g_publisher, true);
  });
}

}  // namespace heapkeeper::stats
