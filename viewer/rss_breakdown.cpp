// Implementation of the RSS breakdown (see rss_breakdown.h).
#include "viewer/rss_breakdown.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "report/read_file.h"
#include "viewer/process_commands.h"

namespace heapkeeper::view {
namespace {

// One mapping of /proc/PID/smaps: its range, its name and its resident bytes.
struct Mapping {
  uint64_t start = 0, end = 0, rss = 0;
  std::string path;
};

bool parse_kilobytes(const std::string& line, const char* field, uint64_t& bytes) {
  const size_t length = std::strlen(field);
  if (line.compare(0, length, field) != 0) return false;
  unsigned long long kilobytes = 0;
  if (std::sscanf(line.c_str() + length, " %llu kB", &kilobytes) != 1) return false;
  bytes = static_cast<uint64_t>(kilobytes) * 1024;
  return true;
}

std::vector<Mapping> parse_smaps(const std::string& text) {
  std::vector<Mapping> mappings;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    unsigned long long start = 0, end = 0;
    int consumed = 0;
    // "start-end perms offset dev inode   path": a mapping's first line. Field lines ("Rss:   12
    // kB") start with a name and a colon, never with hex digits and a dash.
    if (std::sscanf(line.c_str(), "%llx-%llx %*s %*s %*s %*s%n", &start, &end, &consumed) == 2 && consumed > 0) {
      Mapping m;
      m.start = start;
      m.end = end;
      std::string path = line.substr(static_cast<size_t>(consumed));
      path.erase(0, path.find_first_not_of(' '));
      m.path = path;
      mappings.push_back(std::move(m));
      continue;
    }
    if (!mappings.empty()) parse_kilobytes(line, "Rss:", mappings.back().rss);
  }
  return mappings;
}

uint64_t overlap(uint64_t a_start, uint64_t a_end, uint64_t b_start, uint64_t b_end) {
  const uint64_t start = std::max(a_start, b_start), end = std::min(a_end, b_end);
  return end > start ? end - start : 0;
}

bool starts_with(const std::string& text, const char* prefix) { return text.rfind(prefix, 0) == 0; }

// Adds `bytes` resident in a range of kind `kind` to its part.
void add_to_range_part(uint32_t kind, uint64_t bytes, RssBreakdown& b) {
  using stats::RangeKind;
  switch (static_cast<RangeKind>(kind)) {
    case RangeKind::kTrackedHeap:
      b.heap_mapping_rss += bytes;
      return;
    case RangeKind::kInternalHeap:
      b.heapkeeper.internal_heap += bytes;
      return;
    case RangeKind::kHeapkeeperTable:
      b.heapkeeper.tables += bytes;
      return;
    case RangeKind::kHeapkeeperStack:
      b.heapkeeper.stacks += bytes;
      return;
    case RangeKind::kHeapkeeperImage:
      b.heapkeeper.library += bytes;
      return;
    case RangeKind::kJemallocBoot:
      b.heapkeeper.jemalloc_boot += bytes;
      return;
    case RangeKind::kProgramStack:
      b.outside.stacks += bytes;
      return;
  }
  b.outside.anonymous += bytes;  // a kind this reader does not know: never dropped
}

// Adds `bytes` of mapping `m` that no published range holds, by what the mapping is.
void add_by_path(const Mapping& m, uint64_t bytes, const std::string& segment_path, RssBreakdown& b) {
  const std::string& path = m.path;
  if (!segment_path.empty() && (path == segment_path || path == segment_path + " (deleted)"))
    b.heapkeeper.segment += bytes;
  else if (path == "[stack]")
    b.outside.stacks += bytes;
  else if (starts_with(path, "/dev/shm/") || starts_with(path, "/SYSV") || starts_with(path, "/memfd:"))
    b.outside.shared_memory += bytes;
  else if (starts_with(path, "/") || path == "[vdso]" || path == "[vvar]" || path == "[vsyscall]")
    b.outside.code_and_files += bytes;
  else
    b.outside.anonymous += bytes;
}

// Attributes mapping `m`'s resident bytes. A mapping inside one published range is that range's;
// one that holds several, or more than a range (the kernel merges neighbouring anonymous mappings
// of the same flags into one: heapkeeper's reservations and side tables are all NORESERVE, and
// often adjacent), is split by asking which of its pages are present in each range.
void attribute(const Mapping& m, const stats::MemoryFigures& figures, const ResidentBytes& resident_in,
               const std::string& segment_path, RssBreakdown& b) {
  if (m.rss == 0) return;
  uint32_t only_kind = 0, overlapping = 0;
  bool covered = false;
  for (uint32_t i = 0; i < figures.range_count; ++i) {
    const stats::AddressRange& range = figures.ranges[i];
    if (overlap(m.start, m.end, range.start, range.end) == 0) continue;
    ++overlapping;
    only_kind = range.kind;
    covered = range.start <= m.start && range.end >= m.end;
  }
  if (overlapping == 0) {
    add_by_path(m, m.rss, segment_path, b);
    return;
  }
  if (overlapping == 1 && covered) {
    add_to_range_part(only_kind, m.rss, b);
    return;
  }
  uint64_t in_ranges = 0;
  for (uint32_t i = 0; i < figures.range_count; ++i) {
    const stats::AddressRange& range = figures.ranges[i];
    const uint64_t start = std::max(m.start, range.start), end = std::min(m.end, range.end);
    if (end <= start) continue;
    const uint64_t bytes = std::min(resident_in(start, end), m.rss - in_ranges);
    add_to_range_part(range.kind, bytes, b);
    in_ranges += bytes;
  }
  add_by_path(m, m.rss - in_ranges, segment_path, b);
}

// Present pages of [start, end) in process `pid`, from /proc/PID/pagemap: the PAGEMAP_SCAN ioctl
// (Linux 6.7), which skips what was never touched and the zero page, else one 8-byte entry a page
// (which counts the zero page: its number is hidden from an unprivileged reader).
class PagemapReader {
 public:
  explicit PagemapReader(pid_t pid) {
    const std::string path = fmt::format("/proc/{}/pagemap", pid);
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  }
  ~PagemapReader() {
    if (fd_ >= 0) ::close(fd_);
  }
  PagemapReader(const PagemapReader&) = delete;
  PagemapReader& operator=(const PagemapReader&) = delete;

  uint64_t present_bytes(uint64_t start, uint64_t end) {
    if (fd_ < 0 || end <= start) return 0;
    if (scan_works_) {
      uint64_t bytes = 0;
      if (scan(start, end, bytes)) return bytes;
      scan_works_ = false;
    }
    return read_entries(start, end);
  }

 private:
  struct PageRegion {
    uint64_t start, end, categories;
  };
  struct ScanArgument {  // struct pm_scan_arg of <linux/fs.h>, which Debian 12's headers predate
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask,
        category_anyof_mask, return_mask;
  };
  static constexpr uint64_t kPageIsPresent = 1u << 3;
  static constexpr uint64_t kPageIsZero = 1u << 5;  // PAGE_IS_PFNZERO: the shared zero page
  static constexpr unsigned long kPagemapScan = _IOWR('f', 16, ScanArgument);

  bool scan(uint64_t start, uint64_t end, uint64_t& bytes) {
    PageRegion regions[256];
    while (start < end) {
      ScanArgument argument{};
      argument.size = sizeof(argument);
      argument.start = start;
      argument.end = end;
      argument.vec = reinterpret_cast<uint64_t>(regions);
      argument.vec_len = std::size(regions);
      // Present and not the zero page: reading memory never written (a lookup in a sparse table,
      // such as heapkeeper's Python code table or the stack table's counters) maps the shared zero
      // page, which pagemap shows present but RSS does not count. Counted, they made python3's
      // tables look 3 MiB larger than they were.
      argument.category_inverted = kPageIsZero;
      argument.category_mask = kPageIsPresent | kPageIsZero;
      argument.return_mask = kPageIsPresent;
      const int found = ::ioctl(fd_, kPagemapScan, &argument);
      if (found < 0) return false;
      for (int i = 0; i < found; ++i) bytes += regions[i].end - regions[i].start;
      if (argument.walk_end <= start) return false;
      start = argument.walk_end;
    }
    return true;
  }

  // One entry a page, for kernels without PAGEMAP_SCAN: at most 64 GiB of address space (128 MiB
  // of entries) per question, so that a range from a corrupt segment cannot keep us reading.
  uint64_t read_entries(uint64_t start, uint64_t end) {
    constexpr uint64_t kPage = 4096;
    end = std::min(end, start + (uint64_t{64} << 30));
    std::vector<uint64_t> entries(65536);
    uint64_t bytes = 0;
    for (uint64_t page = start / kPage; page < (end + kPage - 1) / kPage;) {
      const uint64_t count = std::min<uint64_t>(entries.size(), (end + kPage - 1) / kPage - page);
      const ssize_t got = ::pread(fd_, entries.data(), count * 8, static_cast<off_t>(page * 8));
      if (got <= 0) break;
      for (ssize_t i = 0; i < got / 8; ++i) bytes += (entries[static_cast<size_t>(i)] >> 63) != 0 ? kPage : 0;
      page += static_cast<uint64_t>(got) / 8;
    }
    return bytes;
  }

  int fd_ = -1;
  bool scan_works_ = true;
};

std::string mib(uint64_t bytes) { return human_bytes(bytes); }

}  // namespace

bool read_rss(pid_t pid, uint64_t& rss, std::string& error) {
  const std::string path = fmt::format("/proc/{}/smaps_rollup", pid);
  bool ok = false;
  errno = 0;
  const std::string text = report::read_whole_file(path.c_str(), &ok);
  if (!ok) {
    error = fmt::format("cannot read {}: {}", path, errno != 0 ? std::strerror(errno) : "unreadable");
    return false;
  }
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (parse_kilobytes(line, "Rss:", rss)) return true;
  }
  error = fmt::format("{} has no Rss line", path);
  return false;
}

RssBreakdown combine_rss(const std::string& smaps_rollup, const std::string& smaps, const stats::Snapshot& s,
                         const std::string& segment_path, const ResidentBytes& resident_in) {
  RssBreakdown b;
  const stats::MemoryFigures& m = s.memory;
  b.trim_policy = static_cast<stats::TrimPolicy>(m.trim_policy);
  b.trim_interval_ms = m.trim_interval_ms;
  b.trim_kept_per_arena_bytes = m.trim_kept_per_arena_bytes;
  {
    std::istringstream in(smaps_rollup);
    std::string line;
    bool found = false;
    while (!found && std::getline(in, line)) found = parse_kilobytes(line, "Rss:", b.rss_bytes);
    if (!found) {
      b.error = "smaps_rollup has no Rss line";
      return b;
    }
  }
  if (m.walked == 0) {
    b.error = "the process has not measured its live blocks yet (ask again in a second)";
    return b;
  }
  for (const Mapping& mapping : parse_smaps(smaps)) attribute(mapping, m, resident_in, segment_path, b);
  b.live_bytes = m.live_resident_bytes;
  b.live_untouched_bytes = m.live_untouched_bytes;
  b.slack_bytes = m.slack_bytes;
  b.heapkeeper.headers = m.header_bytes;
  b.heapkeeper.jemalloc_metadata = m.tracked.metadata_bytes;
  b.kept.dirty = m.tracked.dirty_bytes;
  b.kept.muzzy = m.tracked.muzzy_bytes;
  // Pages of extents in use that no live block's region covers: free regions of slabs, and
  // regions parked in thread caches (jemalloc counts those as allocated, the block map does not).
  b.kept.free_regions = m.tracked.active_bytes > m.live_region_bytes ? m.tracked.active_bytes - m.live_region_bytes : 0;
  // jemalloc counts a slab's free regions whether or not their pages were ever touched: a fresh
  // slab of a few pages, one region of it used, counted them all, and the parts added up to more
  // than the RSS (unexplained -6% for a traced sleep, -10% for python3: found by an adversarial
  // tester). What the tracked reservation holds resident caps them: the rest of it is the other
  // parts drawn from it.
  if (b.heap_mapping_rss != 0) {
    const uint64_t others = b.live_bytes + b.slack_bytes + b.heapkeeper.headers + b.heapkeeper.jemalloc_metadata +
                            b.kept.dirty + b.kept.muzzy;
    const uint64_t resident_rest = b.heap_mapping_rss > others ? b.heap_mapping_rss - others : 0;
    b.kept.free_regions = std::min(b.kept.free_regions, resident_rest);
  }
  b.known = true;
  return b;
}

RssBreakdown measure_rss(pid_t pid, const stats::Snapshot& snapshot, const std::string& segment_path) {
  bool ok = false;
  errno = 0;
  const std::string rollup_path = fmt::format("/proc/{}/smaps_rollup", pid);
  const std::string rollup = report::read_whole_file(rollup_path.c_str(), &ok);
  if (!ok) {
    RssBreakdown b;
    b.error = fmt::format("cannot read {}: {}", rollup_path, errno != 0 ? std::strerror(errno) : "unreadable");
    return b;
  }
  errno = 0;
  const std::string smaps_path = fmt::format("/proc/{}/smaps", pid);
  const std::string smaps = report::read_whole_file(smaps_path.c_str(), &ok);
  if (!ok) {
    RssBreakdown b;
    b.error = fmt::format("cannot read {}: {}", smaps_path, errno != 0 ? std::strerror(errno) : "unreadable");
    return b;
  }
  PagemapReader pagemap(pid);
  return combine_rss(rollup, smaps, snapshot, segment_path,
                     [&pagemap](uint64_t start, uint64_t end) { return pagemap.present_bytes(start, end); });
}

std::string trim_policy_text(const RssBreakdown& b) {
  switch (b.trim_policy) {
    case stats::TrimPolicy::kTrimmer:
      return fmt::format("heapkeeper's trimmer returns freed pages every {} ms (an arena keeps up to {})",
                         b.trim_interval_ms, mib(b.trim_kept_per_arena_bytes));
    case stats::TrimPolicy::kCollectDecay:
      return fmt::format("collect mode: jemalloc returns freed pages over {} s (decay)", b.trim_interval_ms / 1000);
    case stats::TrimPolicy::kUsersDecay:
      return "MALLOC_CONF sets jemalloc's decay: freed pages go back as it says";
    case stats::TrimPolicy::kOff:
      return "HEAPKEEPER_TRIM=off: freed pages stay until `heapkeeper trim`";
  }
  return "unknown";
}

nlohmann::json rss_json(const RssBreakdown& b) {
  static const char* const kPolicies[] = {"unknown", "trimmer", "collect_decay", "users_decay", "off"};
  const auto policy = static_cast<uint32_t>(b.trim_policy);
  nlohmann::json doc = {{"rss_bytes", nullptr}, {"known", b.known}};
  if (!b.known) {
    doc["error"] = b.error;
    if (b.rss_bytes != 0) doc["rss_bytes"] = b.rss_bytes;
    return doc;
  }
  doc["rss_bytes"] = b.rss_bytes;
  doc["live_bytes"] = b.live_bytes;
  doc["live_untouched_bytes"] = b.live_untouched_bytes;
  doc["slack_bytes"] = b.slack_bytes;
  doc["heapkeeper_bytes"] = b.heapkeeper.total();
  doc["heapkeeper"] = {{"headers", b.heapkeeper.headers},
                       {"jemalloc_metadata", b.heapkeeper.jemalloc_metadata},
                       {"jemalloc_boot", b.heapkeeper.jemalloc_boot},
                       {"internal_heap", b.heapkeeper.internal_heap},
                       {"tables", b.heapkeeper.tables},
                       {"thread_stacks", b.heapkeeper.stacks},
                       {"library", b.heapkeeper.library},
                       {"segment", b.heapkeeper.segment}};
  doc["allocator_kept_bytes"] = b.kept.total();
  doc["allocator_kept"] = {{"dirty", b.kept.dirty},
                           {"muzzy", b.kept.muzzy},
                           {"returnable", b.kept.returnable()},
                           {"free_regions", b.kept.free_regions}};
  doc["outside_heap_bytes"] = b.outside.total();
  doc["outside_heap"] = {{"code_and_files", b.outside.code_and_files},
                         {"stacks", b.outside.stacks},
                         {"shared_memory", b.outside.shared_memory},
                         {"anonymous", b.outside.anonymous}};
  doc["sum_bytes"] = b.sum();
  doc["unexplained_bytes"] = b.unexplained();
  doc["heap_mapping_rss_bytes"] = b.heap_mapping_rss;
  doc["freed_memory_policy"] = policy < std::size(kPolicies) ? kPolicies[policy] : "unknown";
  doc["trim_interval_ms"] = b.trim_interval_ms;
  return doc;
}

std::vector<std::string> rss_text_lines(const RssBreakdown& b) {
  std::vector<std::string> lines;
  if (!b.known) {
    lines.push_back(
        fmt::format("  RSS {}: no breakdown ({})", b.rss_bytes != 0 ? mib(b.rss_bytes) : "unknown", b.error));
    return lines;
  }
  const auto percent = [&](uint64_t bytes) {
    return b.rss_bytes == 0 ? 0.0 : 100.0 * static_cast<double>(bytes) / static_cast<double>(b.rss_bytes);
  };
  const auto row = [&](const char* label, uint64_t bytes, const std::string& detail) {
    lines.push_back(fmt::format("    {:<30} {:>10} {:>5.1f}%  {}", label, mib(bytes), percent(bytes), detail));
  };
  lines.push_back(fmt::format("  RSS {}:", mib(b.rss_bytes)));
  row("live (asked for)", b.live_bytes,
      b.live_untouched_bytes != 0
          ? fmt::format("(and {} asked for, never touched: not resident)", mib(b.live_untouched_bytes))
          : std::string());
  row("size-class slack", b.slack_bytes, "");
  const RssBreakdown::Heapkeeper& h = b.heapkeeper;
  row("heapkeeper", h.total(),
      fmt::format("headers {}, tables {}, own heap {}, jemalloc {}, library {}, segment {}, stacks {}", mib(h.headers),
                  mib(h.tables), mib(h.internal_heap), mib(h.jemalloc_metadata + h.jemalloc_boot), mib(h.library),
                  mib(h.segment), mib(h.stacks)));
  row("freed, kept by the allocator", b.kept.total(),
      fmt::format("dirty {}, muzzy {} (trim returns these); free slab regions {}", mib(b.kept.dirty), mib(b.kept.muzzy),
                  mib(b.kept.free_regions)));
  const RssBreakdown::Outside& o = b.outside;
  row("outside the heap", o.total(),
      fmt::format("code and files {}, stacks {}, shared memory {}, other anonymous {}", mib(o.code_and_files),
                  mib(o.stacks), mib(o.shared_memory), mib(o.anonymous)));
  const int64_t rest = b.unexplained();
  const uint64_t magnitude = static_cast<uint64_t>(rest < 0 ? -rest : rest);
  lines.push_back(fmt::format("    {:<30} {:>10} {:>5.1f}%  (RSS minus the parts above)", "unexplained",
                              (rest < 0 ? "-" : "") + mib(magnitude), (rest < 0 ? -1 : 1) * percent(magnitude)));
  lines.push_back("  freed memory: " + trim_policy_text(b));
  return lines;
}

}  // namespace heapkeeper::view
