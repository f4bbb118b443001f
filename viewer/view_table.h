// Drawing the tabbed table of `heapkeeper view`'s process screen: the tab bar (with the sort order
// and the filter), the table itself (columns dropped by priority on narrow terminals, the spare
// width given to the function and location), and the detail pane with the selected row's whole
// stack (and, for a site, its retainers beside it). The rows come from view_rows.h; the process screen owns the state
// and passes it in.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "stats/shm_layout.h"
#include "viewer/view_rows.h"
#include "viewer/view_screen.h"

namespace heapkeeper::view {

// The retainers of the selected site (`heapkeeper why` for that site, asked in the background when
// the detail pane opens on it), drawn beside its stack.
struct RetainersPane {
  bool pending = false;            // asked, no answer yet
  std::string problem;             // the request failed: why, one line
  std::vector<std::string> lines;  // the answer (why_command.h's why_text_lines), JSON-escaped text
};

struct TableView {
  Tab tab;
  int sort;
  const std::string& filter;
  const std::vector<Row>& rows;              // built with `tab`, `sort` and `filter`
  int selected;                              // index into rows (0 when empty)
  int* first;                                // first row shown: the table scrolls it to keep the selection visible
  const RetainersPane* retainers = nullptr;  // the sites tab's detail pane shows it beside the stack
  const SiteBaseline* baseline = nullptr;    // marked: the sites' LIVE and BLOCKS are changes since it
  std::chrono::steady_clock::time_point now = {};
};

void draw_tab_bar(Screen& screen, const stats::Snapshot& snapshot, const TableView& view, int y);
// The column header on `header_y`, rows on [top, top + height).
void draw_table(Screen& screen, const stats::Snapshot& snapshot, const TableView& view, int header_y, int top,
                int height);
void draw_detail(Screen& screen, const stats::Snapshot& snapshot, const TableView& view, int top, int height);
// Lines the detail pane needs to show the selected row completely (its title and every frame).
int detail_lines_needed(const stats::Snapshot& snapshot, const TableView& view);

}  // namespace heapkeeper::view
