// Implementation of the live view's tables (see view_rows.h).
#include "viewer/view_rows.h"

#include <algorithm>
#include <cstring>

#include "viewer/view_format.h"

namespace heapkeeper::view {
namespace {

// FNV-1a over a stack's addresses and modules: a leak's key (leaks carry no stack id). The same
// addresses may belong to two libraries, one closed before the other was loaded in its place.
uint64_t stack_key(const stats::Frame* frames, uint32_t depth, uint64_t seed) {
  uint64_t hash = 1469598103934665603ull ^ seed;
  for (uint32_t i = 0; i < depth; ++i) {
    hash ^= frames[i].address;
    hash *= 1099511628211ull;
    for (size_t k = 0; k < sizeof(frames[i].module) && frames[i].module[k] != '\0'; ++k) {
      hash ^= static_cast<unsigned char>(frames[i].module[k]);
      hash *= 1099511628211ull;
    }
  }
  return hash;
}

bool stack_matches(const stats::Frame* frames, uint32_t depth, const std::string& filter) {
  if (filter.empty()) return true;
  for (uint32_t i = 0; i < depth; ++i) {
    if (contains_ignoring_case(frames[i].function, filter) || contains_ignoring_case(frames[i].module, filter))
      return true;
  }
  return false;
}

void top_frame_cells(const stats::Frame* frames, uint32_t depth, std::vector<std::string>& cells) {
  if (depth == 0) {
    cells.emplace_back("(no stack)");
    cells.emplace_back("");
    return;
  }
  const stats::Frame& frame = frames[shown_frame(frames, depth)];
  cells.push_back(frame_function(frame));
  cells.push_back(frame_location(frame));
}

struct Keyed {
  Row row;
  double sort_value;
};

std::vector<Row> sorted_rows(std::vector<Keyed>& keyed) {
  // Largest first; equal figures keep a stable order by key so rows do not jump between frames.
  std::sort(keyed.begin(), keyed.end(), [](const Keyed& a, const Keyed& b) {
    if (a.sort_value != b.sort_value) return a.sort_value > b.sort_value;
    return a.row.key < b.row.key;
  });
  std::vector<Row> rows;
  rows.reserve(keyed.size());
  for (Keyed& k : keyed) rows.push_back(std::move(k.row));
  return rows;
}

}  // namespace

const char* tab_title(Tab tab) {
  switch (tab) {
    case Tab::kSites:
      return "Sites";
    case Tab::kLeaks:
      return "Leaks";
    case Tab::kThreads:
      return "Threads";
  }
  return "?";
}

Tab next_tab(Tab tab) { return static_cast<Tab>((static_cast<int>(tab) + 1) % kTabCount); }
Tab previous_tab(Tab tab) { return static_cast<Tab>((static_cast<int>(tab) + kTabCount - 1) % kTabCount); }

int sort_count(Tab tab) { return tab == Tab::kSites ? 6 : tab == Tab::kThreads ? 3 : 4; }

const char* sort_name(Tab tab, int sort) {
  static const char* const sites[] = {"live bytes", "blocks", "alloc rate", "leaked bytes", "retained bytes", "growth"};
  static const char* const leaks[] = {"bytes", "blocks", "new blocks", "age"};
  static const char* const threads[] = {"net bytes", "allocations", "frees"};
  if (sort < 0 || sort >= sort_count(tab)) return "?";
  switch (tab) {
    case Tab::kSites:
      return sites[sort];
    case Tab::kLeaks:
      return leaks[sort];
    case Tab::kThreads:
      return threads[sort];
  }
  return "?";
}

const std::vector<Column>& columns_of(Tab tab) {
  // Minimum widths fit 80 columns with every column shown (79 and 80 cells with separators); the
  // sites' RETAINED and GROWTH columns need 100, and go first on a narrower terminal.
  static const std::vector<Column> sites = {{"LIVE", 10, true, 0, 0},       {"BLOCKS", 9, true, 1, 1},
                                            {"ALLOCS/S", 10, true, 2, 3},   {"LEAKED", 10, true, 3, 2},
                                            {"RETAINED", 10, true, 4, 5},   {"GROWTH", 11, true, 5, 6},
                                            {"FUNCTION", 18, false, -1, 0}, {"LOCATION", 16, false, -1, 4}};
  static const std::vector<Column> leaks = {
      {"KIND", 8, false, -1, 3}, {"BYTES", 10, true, 0, 0},      {"BLOCKS", 9, true, 1, 1},     {"NEW", 7, true, 2, 4},
      {"AGE", 5, true, 3, 5},    {"FUNCTION", 18, false, -1, 0}, {"LOCATION", 16, false, -1, 2}};
  static const std::vector<Column> threads = {{"TID", 8, true, -1, 0},    {"#", 4, true, -1, 3},
                                              {"NAME", 16, false, -1, 0}, {"NET BYTES", 11, true, 0, 0},
                                              {"ALLOCS", 12, true, 1, 1}, {"FREES", 12, true, 2, 2}};
  switch (tab) {
    case Tab::kSites:
      return sites;
    case Tab::kLeaks:
      return leaks;
    case Tab::kThreads:
      return threads;
  }
  return sites;
}

uint32_t shown_frame(const stats::Frame* frames, uint32_t depth) {
  // Under Python the innermost frames are the interpreter's allocator: the program's line is the
  // innermost Python frame.
  for (uint32_t i = 0; i < depth; ++i) {
    if (frames[i].module_index == stats::kPythonFrameIndex) return i;
  }
  for (uint32_t i = 0; i < depth; ++i) {
    if (std::strncmp(frames[i].function, "operator new", 12) != 0) return i;
  }
  return 0;
}

uint32_t entry_count(const stats::Snapshot& s, Tab tab) {
  switch (tab) {
    case Tab::kSites:
      return std::min(s.site_count, stats::kMaxSites);
    case Tab::kLeaks:
      return std::min(s.leak_count, stats::kMaxLeaks);
    case Tab::kThreads:
      return std::min(s.thread_count, stats::kMaxThreads);
  }
  return 0;
}

std::vector<Row> build_rows(const stats::Snapshot& s, Tab tab, int sort, const std::string& filter,
                            const SiteBaseline* baseline) {
  std::vector<Keyed> keyed;
  const uint32_t count = entry_count(s, tab);
  for (uint32_t i = 0; i < count; ++i) {
    Keyed k;
    k.row.index = i;
    std::vector<std::string>& cells = k.row.cells;
    if (tab == Tab::kSites) {
      const stats::Site& site = s.sites[i];
      const uint32_t depth = std::min(site.depth, stats::kMaxFrames);
      if (!stack_matches(site.frames, depth, filter)) continue;
      k.row.key = site.stack_id;
      const double rate = finite_rate(site.allocation_rate);
      // Sites whose retained size the last scan did not compute, and sites not growing, sort last.
      const double retained = site.retained_known != 0 ? static_cast<double>(site.retained_bytes) : -1;
      const double growth = site.growing != 0 ? finite_rate(site.growth_bytes_per_second) : -1;
      const double values[] = {static_cast<double>(site.live_bytes),
                               static_cast<double>(site.live_blocks),
                               rate,
                               static_cast<double>(site.leaked_bytes),
                               retained,
                               growth};
      k.sort_value = values[std::clamp(sort, 0, 5)];
      cells = {format_bytes(site.live_bytes), format_count(site.live_blocks)};
      if (baseline != nullptr) {
        const SiteDelta delta = baseline->delta(site);
        cells = {format_delta_bytes(delta), format_delta_blocks(delta)};
        if (sort == 0 || sort == 1) k.sort_value = static_cast<double>(sort == 0 ? delta.bytes : delta.blocks);
      }
      cells.insert(cells.end(),
                   {format_rate(rate), site.leaked_bytes == 0 ? "-" : format_bytes(site.leaked_bytes),
                    site.retained_known != 0 ? format_bytes(site.retained_bytes) : "-",
                    site.growing != 0 ? "+" + format_bytes(static_cast<uint64_t>(std::max(growth, 0.0))) + "/s" : "-"});
      top_frame_cells(site.frames, depth, cells);
    } else if (tab == Tab::kLeaks) {
      const stats::Leak& leak = s.leaks[i];
      const uint32_t depth = std::min(leak.depth, stats::kMaxFrames);
      if (!stack_matches(leak.frames, depth, filter)) continue;
      k.row.key = stack_key(leak.frames, depth, leak.kind);
      const double values[] = {static_cast<double>(leak.bytes), static_cast<double>(leak.blocks),
                               static_cast<double>(leak.new_blocks), static_cast<double>(leak.age_scans)};
      k.sort_value = values[std::clamp(sort, 0, 3)];
      cells = {leak_kind_text(leak.kind), format_bytes(leak.bytes), format_count(leak.blocks),
               format_count(leak.new_blocks), format_count(leak.age_scans)};
      top_frame_cells(leak.frames, depth, cells);
    } else {
      const stats::ThreadFigures& t = s.threads[i];
      const std::string name(t.name, strnlen(t.name, sizeof(t.name)));
      if (!filter.empty() && !contains_ignoring_case(name, filter) &&
          !contains_ignoring_case(std::to_string(t.tid), filter)) {
        continue;
      }
      k.row.key = static_cast<uint32_t>(t.tid);
      const double values[] = {static_cast<double>(t.net_bytes), static_cast<double>(t.allocations),
                               static_cast<double>(t.frees)};
      k.sort_value = values[std::clamp(sort, 0, 2)];
      cells = {std::to_string(t.tid),       std::to_string(t.index),
               name.empty() ? "-" : name,   format_signed_bytes(t.net_bytes),
               format_count(t.allocations), format_count(t.frees)};
    }
    keyed.push_back(std::move(k));
  }
  return sorted_rows(keyed);
}

}  // namespace heapkeeper::view
