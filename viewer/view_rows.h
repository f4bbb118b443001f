// The tables of `heapkeeper view`: allocation sites, the last scan's leaks and threads, built
// from a sanitised snapshot as rows of text cells, sorted and filtered. Pure (no terminal), so the
// sorting, the filter and the columns are tested directly.
//
// A row refers back to its snapshot entry by index (for the detail pane) and carries a key that
// stays the same across snapshots (the stack, the leak's stack, the tid), so the selection follows
// its row when the order changes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "stats/shm_layout.h"
#include "viewer/view_baseline.h"

namespace heapkeeper::view {

enum class Tab { kSites = 0, kLeaks = 1, kThreads = 2 };
inline constexpr int kTabCount = 3;

struct Column {
  const char* title;
  int width;     // minimum width; the last column takes what is left
  bool numeric;  // right-aligned
  int sort;      // the sort order this column shows, or -1
  int priority;  // columns of higher numbers are dropped first on narrow terminals
};

struct Row {
  uint32_t index = 0;  // into snapshot.sites / leaks / threads
  uint64_t key = 0;    // stable across snapshots
  std::vector<std::string> cells;
};

const char* tab_title(Tab tab);
Tab next_tab(Tab tab);
Tab previous_tab(Tab tab);

// Sort orders of a tab (largest first), and their names as the column headers show them.
int sort_count(Tab tab);
const char* sort_name(Tab tab, int sort);

const std::vector<Column>& columns_of(Tab tab);

// The rows of `tab`, filtered by `filter` (a case-insensitive substring of any frame's function or
// module for sites and leaks, of the name or tid for threads) and sorted by `sort`. With a
// `baseline`, the sites' LIVE and BLOCKS cells (and those two sort orders) are the changes since it.
std::vector<Row> build_rows(const stats::Snapshot& snapshot, Tab tab, int sort, const std::string& filter,
                            const SiteBaseline* baseline = nullptr);

// Rows of `tab` before filtering, for the tab labels.
uint32_t entry_count(const stats::Snapshot& snapshot, Tab tab);

// The frame a site or leak is shown by: the first that is not operator new/new[] itself (C++
// programs would otherwise show operator new on every row); frame 0 when all are.
uint32_t shown_frame(const stats::Frame* frames, uint32_t depth);

}  // namespace heapkeeper::view
