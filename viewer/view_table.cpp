// Implementation of the live view's table drawing (see view_table.h).
#include "viewer/view_table.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstring>

#include "report/json_text.h"
#include "viewer/view_format.h"

namespace heapkeeper::view {

int detail_lines_needed(const stats::Snapshot& snapshot, const TableView& view) {
  if (view.rows.empty()) return 2;
  const Row& row = view.rows[static_cast<size_t>(view.selected)];
  switch (view.tab) {
    case Tab::kSites: {
      const int frames = static_cast<int>(std::max(1u, std::min(snapshot.sites[row.index].depth, stats::kMaxFrames)));
      const int retainers = view.retainers != nullptr ? std::max(1, static_cast<int>(view.retainers->lines.size())) : 0;
      return 1 + std::max(frames, retainers);
    }
    case Tab::kLeaks:
      return 1 + static_cast<int>(std::max(1u, std::min(snapshot.leaks[row.index].depth, stats::kMaxFrames)));
    case Tab::kThreads:
      return 5;
  }
  return 2;
}

void draw_tab_bar(Screen& screen, const stats::Snapshot& snapshot, const TableView& view, int y) {
  const int width = screen.columns();
  int x = screen.put(y, 0, " ", width, Role::kNormal);
  for (int i = 0; i < kTabCount; ++i) {
    const Tab tab = static_cast<Tab>(i);
    std::string label = fmt::format(" {} ({}", tab_title(tab), format_count(entry_count(snapshot, tab)));
    if (tab == Tab::kSites && snapshot.total_site_count > snapshot.site_count) {
      label += " of " + format_count(snapshot.total_site_count);
    }
    label += ") ";
    x += screen.put(y, x, label, width - x, tab == view.tab ? Role::kTabActive : Role::kTabInactive);
    x += screen.put(y, x, " ", width - x, Role::kNormal);
  }
  std::vector<std::pair<std::string, Role>> right = {{" sort: ", Role::kLabel},
                                                     {sort_name(view.tab, view.sort), Role::kValue}};
  if (view.baseline != nullptr) {
    const auto age = std::chrono::duration_cast<std::chrono::nanoseconds>(view.now - view.baseline->marked_at());
    const int64_t bytes = view.baseline->total_bytes_delta(snapshot);
    right.push_back({"  since the mark ", Role::kLabel});
    right.push_back({format_duration(static_cast<uint64_t>(std::max<int64_t>(age.count(), 0))), Role::kValue});
    right.push_back({" ago: ", Role::kLabel});
    right.push_back({(bytes > 0 ? "+" : "") + format_signed_bytes(bytes), Role::kValue});
  }
  if (!view.filter.empty()) {
    right.push_back({"  filter: ", Role::kLabel});
    right.push_back({view.filter, Role::kValue});
    right.push_back({fmt::format(" ({} of {})", view.rows.size(), entry_count(snapshot, view.tab)), Role::kLabel});
  }
  int right_width = 0;
  for (const auto& [text, role] : right) right_width += screen.width_of(text);
  x = std::max(x + 1, width - right_width - 1);
  screen.draw_segments(y, x, width - x, right);
}

void draw_table(Screen& screen, const stats::Snapshot& snapshot, const TableView& view, int header_y, int top,
                int height) {
  const int width = screen.columns();
  const std::vector<Column>& all = columns_of(view.tab);
  // Drop the least important columns until the minimum widths fit.
  std::vector<bool> shown(all.size(), true);
  auto needed = [&] {
    int total = 0;
    for (size_t i = 0; i < all.size(); ++i) total += shown[i] ? all[i].width + 1 : 0;
    return total;
  };
  while (needed() > width) {
    int drop = -1;
    for (size_t i = 0; i < all.size(); ++i) {
      if (shown[i] && all[i].priority > 0 && (drop < 0 || all[i].priority > all[static_cast<size_t>(drop)].priority)) {
        drop = static_cast<int>(i);
      }
    }
    if (drop < 0) break;
    shown[static_cast<size_t>(drop)] = false;
  }
  // Spare width goes to the text columns: a location up to 28 cells, then the function.
  std::vector<int> widths(all.size(), 0);
  int spare = width - needed();
  for (size_t i = 0; i < all.size(); ++i) widths[i] = shown[i] ? all[i].width : 0;
  for (size_t i = 0; i < all.size() && spare > 0; ++i) {
    if (shown[i] && std::string(all[i].title) == "LOCATION") {
      const int grow = std::min(spare, 28 - widths[i]);
      if (grow > 0) {
        widths[i] += grow;
        spare -= grow;
      }
    }
  }
  for (size_t i = 0; i < all.size() && spare > 0; ++i) {
    if (shown[i] && (std::string(all[i].title) == "FUNCTION" || std::string(all[i].title) == "NAME")) {
      widths[i] += spare;
      spare = 0;
    }
  }
  const int sort = view.sort;
  const char* arrow = screen.utf8() ? " \u25bc" : " v";
  int x = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    if (!shown[i]) continue;
    const bool sorted = all[i].sort == sort;
    // Marked: LIVE and BLOCKS are changes since the baseline.
    const bool delta = view.baseline != nullptr && view.tab == Tab::kSites && (all[i].sort == 0 || all[i].sort == 1);
    const std::string title =
        (delta ? (screen.utf8() ? "\u0394" : "+-") : "") + std::string(all[i].title) + (sorted ? arrow : "");
    const std::string cell =
        all[i].numeric ? std::string(static_cast<size_t>(std::max(0, widths[i] - screen.width_of(title))), ' ') + title
                       : title;
    screen.put(header_y, x, cell, widths[i], sorted ? Role::kColumnHeaderSorted : Role::kColumnHeader, true);
    x += widths[i];
    if (x < width) x += screen.put(header_y, x, " ", 1, Role::kColumnHeader);
  }
  if (x < width) screen.put(header_y, x, "", width - x, Role::kColumnHeader, true);

  if (view.rows.empty()) {
    std::string message;
    if (!view.filter.empty())
      message = "no rows match the filter '" + view.filter + "' (Esc clears it)";
    else if (view.tab == Tab::kLeaks)
      message = snapshot.scan_count == 0 ? "no scan yet: press g to scan for leaks" : "the last scan found no leaks";
    else if (view.tab == Tab::kSites)
      message = "no live allocation sites";
    else
      message = "no threads";
    screen.put(top, 1, message, width - 1, Role::kDim);
    return;
  }
  int& first = *view.first;
  const int selected = view.selected;
  if (selected < first) first = selected;
  if (selected >= first + height) first = selected - height + 1;
  first = std::clamp(first, 0, std::max(0, static_cast<int>(view.rows.size()) - height));
  for (int line = 0; line < height; ++line) {
    const size_t index = static_cast<size_t>(first) + static_cast<size_t>(line);
    if (index >= view.rows.size()) break;
    const Row& row = view.rows[index];
    const bool is_selected = static_cast<int>(index) == selected;
    const Role role = is_selected ? Role::kSelected : Role::kNormal;
    x = 0;
    for (size_t i = 0; i < all.size() && i < row.cells.size(); ++i) {
      if (!shown[i]) continue;
      const std::string text = printable(row.cells[i], screen.utf8());
      Role cell_role = role;
      if (!is_selected && view.tab == Tab::kSites && i == 3 && text != "-") cell_role = Role::kLeaked;
      if (!is_selected && view.tab == Tab::kLeaks && i == 0 && text == "direct") cell_role = Role::kLeaked;
      const std::string cell = all[i].numeric ? fmt::format("{:>{}}", text, widths[i]) : text;
      screen.put(top + line, x, cell, widths[i], cell_role, true);
      x += widths[i];
      if (x < width) x += screen.put(top + line, x, " ", 1, role);
    }
    if (is_selected && x < width) screen.put(top + line, x, "", width - x, role, true);
  }
}

namespace {

// The right half of a site's detail pane: who holds its blocks.
void draw_retainers(Screen& screen, const RetainersPane& pane, int top, int height, int left) {
  const int width = screen.columns() - left;
  const bool utf8 = screen.utf8();
  screen.put(top, left, " Retained by", width, Role::kColumnHeader, true);
  if (pane.pending) {
    screen.put(top + 1, left + 1, "asking the process who holds these blocks...", width - 1, Role::kDim);
    return;
  }
  if (!pane.problem.empty()) {
    screen.put(top + 1, left + 1, printable(report::printable_json_text(report::json_text(pane.problem)), utf8),
               width - 1, Role::kError);
    return;
  }
  for (int i = 0; i < static_cast<int>(pane.lines.size()) && i + 1 < height; ++i) {
    const std::string& line = pane.lines[static_cast<size_t>(i)];
    screen.put(top + 1 + i, left + 1, printable(report::printable_json_text(line), utf8), width - 1,
               i == 0 ? Role::kLabel : Role::kNormal);
  }
}

}  // namespace

void draw_detail(Screen& screen, const stats::Snapshot& snapshot, const TableView& view, int top, int height) {
  const bool beside = view.tab == Tab::kSites && view.retainers != nullptr && !view.rows.empty();
  // A site's stack takes the left half, its retainers the right.
  const int width = beside ? screen.columns() / 2 : screen.columns();
  if (beside) draw_retainers(screen, *view.retainers, top, height, width);
  const bool utf8 = screen.utf8();
  if (view.rows.empty()) {
    screen.put(top, 0, " (nothing selected)", width, Role::kColumnHeader, true);
    return;
  }
  const Row& row = view.rows[static_cast<size_t>(view.selected)];
  const stats::Frame* frames = nullptr;
  uint32_t depth = 0;
  std::string title;
  if (view.tab == Tab::kSites) {
    const stats::Site& site = snapshot.sites[row.index];
    frames = site.frames;
    depth = std::min(site.depth, stats::kMaxFrames);
    title = fmt::format(" Stack ({} frames) of the site: {} live in {} blocks, {} allocations since start", depth,
                        format_bytes(site.live_bytes), format_count(site.live_blocks), format_count(site.allocations));
  } else if (view.tab == Tab::kLeaks) {
    const stats::Leak& leak = snapshot.leaks[row.index];
    frames = leak.frames;
    depth = std::min(leak.depth, stats::kMaxFrames);
    title = fmt::format(" Stack ({} frames) of the {} leak: {} in {} blocks ({} new), seen by {} earlier scans", depth,
                        leak_kind_text(leak.kind), format_bytes(leak.bytes), format_count(leak.blocks),
                        format_count(leak.new_blocks), format_count(leak.age_scans));
  } else {
    const stats::ThreadFigures& t = snapshot.threads[row.index];
    screen.put(top, 0, fmt::format(" Thread {} (heapkeeper's #{})", t.tid, t.index), width, Role::kColumnHeader, true);
    const std::string lines[] = {
        fmt::format(" name          {}", printable(std::string(t.name, strnlen(t.name, sizeof(t.name))), utf8)),
        fmt::format(" allocations   {}", format_count(t.allocations)),
        fmt::format(" frees         {}", format_count(t.frees)),
        fmt::format(" net bytes     {} (allocated minus freed by this thread)", format_signed_bytes(t.net_bytes)),
    };
    for (int i = 0; i < 4 && i + 1 < height; ++i) screen.put(top + 1 + i, 0, lines[i], width, Role::kNormal);
    return;
  }
  screen.put(top, 0, title, width, Role::kColumnHeader, true);
  if (depth == 0) {
    screen.put(top + 1, 1, "(no stack was recorded)", width - 1, Role::kDim);
    return;
  }
  const int room = height - 1;
  const int shown = static_cast<int>(depth) <= room ? static_cast<int>(depth) : room - 1;
  for (int i = 0; i < shown; ++i) {
    const stats::Frame& frame = frames[i];
    const int y = top + 1 + i;
    int x = screen.put(y, 0, fmt::format(" #{:<3}", i), width, Role::kDim);
    x += screen.put(y, x, printable(frame_function(frame), utf8), width - x, Role::kValue);
    if (frame.file[0] != '\0') {
      x +=
          screen.put(y, x, printable(fmt::format("  at {}:{}", frame.file, frame.line), utf8), width - x, Role::kLabel);
    }
    const std::string module = frame.module[0] != '\0' ? frame.module : "??";
    if (frame.module_index == stats::kPythonFrameIndex)
      screen.put(y, x, "  [py]", width - x, Role::kDim);
    else
      screen.put(y, x, printable(fmt::format("  in {}+{:#x}", base_name(module), frame.module_offset), utf8), width - x,
                 Role::kDim);
  }
  if (shown < static_cast<int>(depth)) {
    screen.put(
        top + 1 + shown, 1,
        fmt::format("... {} more frames (enlarge the terminal to see them)", depth - static_cast<uint32_t>(shown)),
        width - 1, Role::kDim);
  }
}

}  // namespace heapkeeper::view
