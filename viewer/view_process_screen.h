// The live screen of one tracked process in `heapkeeper view`: figures and chart at the top
// (view_figures.h), then a tabbed table (view_table.h: allocation sites, the last scan's leaks,
// threads) with sorting, a filter and a detail pane showing the selected row's whole stack (a
// site's retainers beside it: `heapkeeper why` for that site), a status line and the key bar. It re-reads the snapshot
// once a second, asks for scans and collections in the background (view_background_command.h), and keeps showing the
// last figures, under a banner, once the process has exited.
#pragma once

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stats/shm_layout.h"
#include "viewer/rss_breakdown.h"
#include "viewer/segment_reader.h"
#include "viewer/view_background_command.h"
#include "viewer/view_baseline.h"
#include "viewer/view_rows.h"
#include "viewer/view_screen.h"
#include "viewer/view_table.h"

namespace heapkeeper::view {

class ProcessScreen {
 public:
  enum class Outcome { kQuit, kPicker };

  // `reader` is open (read-only) and `first` is a snapshot taken from it.
  ProcessScreen(Screen& screen, std::unique_ptr<SegmentReader> reader, std::unique_ptr<stats::Snapshot> first);
  // Runs until the user quits (q, F10, an interrupt) or asks for the process picker (p).
  Outcome run();

  // The key list, as the help overlay shows it (also printed by `heapkeeper view --help`).
  static const std::vector<std::pair<std::string, std::string>>& key_help();

 private:
  struct Layout {
    int figures = 0, chart_top = 0, chart_height = 0, tabs = 0, header = 0, table_top = 0, table_height = 0;
    int detail_top = 0, detail_height = 0, status = 0, footer = 0;
  };

  void reload();
  void measure_memory();  // the RSS breakdown of the header, from the current snapshot
  void rebuild_rows();
  void select(int index);
  Layout layout();
  TableView table_view();
  bool handle_key(const Key& key);  // false: leave the screen
  bool handle_filter_key(const Key& key);
  void start_command(stats::Command command);
  // With the detail pane open on a site, asks (in the background) who holds that site's blocks,
  // once per site selected.
  void ask_retainers();
  void set_status(std::string text, Role role);

  void draw();
  void draw_status(int y);
  void draw_help();

  int tab_index() const { return static_cast<int>(tab_); }

  Screen& screen_;
  std::unique_ptr<SegmentReader> reader_;
  std::unique_ptr<stats::Snapshot> snapshot_, spare_;
  SegmentInfo info_;
  RssBreakdown rss_;
  bool exited_ = false;
  std::chrono::steady_clock::time_point last_reload_;
  std::string reload_error_;

  Tab tab_ = Tab::kSites;
  std::array<int, kTabCount> sort_{};
  std::array<int, kTabCount> selected_{};
  std::array<int, kTabCount> top_{};
  std::array<uint64_t, kTabCount> selected_key_{};
  std::array<bool, kTabCount> has_selected_key_{};
  std::vector<Row> rows_;
  std::string filter_;
  std::string filter_draft_;
  bool editing_filter_ = false;
  bool detail_ = false;
  bool help_ = false;
  bool confirm_collect_ = false;
  std::optional<SiteBaseline> baseline_;  // marked with b: the sites table shows changes since
  Outcome outcome_ = Outcome::kQuit;

  std::string status_;
  Role status_role_ = Role::kStatus;
  BackgroundCommand command_;
  RetainersPane retainers_;
  uint32_t retainers_stack_ = 0;  // the site retainers_ is about (0: none asked)
  stats::Command command_kind_ = stats::Command::kNone;
  int page_ = 10;  // rows a page moves, from the last layout
};

}  // namespace heapkeeper::view
