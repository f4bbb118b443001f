// Implementation of the process screen (see view_process_screen.h).
//
// The loop wakes at least four times a second: to read keys, to poll a background scan, and to
// reload the snapshot once a second. Drawing is cheap (curses sends only what changed), so every
// wake-up redraws the whole screen from the current state; there is no partial invalidation.
#include "viewer/view_process_screen.h"

#include <curses.h>
#include <fmt/core.h>

#include <algorithm>

#include "viewer/view_figures.h"
#include "viewer/view_format.h"
#include "viewer/view_table.h"

namespace heapkeeper::view {
namespace {

constexpr auto kScreenReloadInterval = std::chrono::milliseconds(1000);
constexpr int kCommandTimeoutMs = 60000;
constexpr size_t kRetainerPaths = 3;  // shortest retainer paths the detail pane shows for a site
constexpr int kMinimumTableRows = 2;

bool is_enter(const Key& key) { return key.is(L'\n') || key.is(L'\r') || key.is_function(KEY_ENTER); }

bool is_backspace(const Key& key) { return key.is(127) || key.is(8) || key.is_function(KEY_BACKSPACE); }

}  // namespace

const std::vector<std::pair<std::string, std::string>>& ProcessScreen::key_help() {
  static const std::vector<std::pair<std::string, std::string>> keys = {
      {"Up/Down, j/k", "move the selection"},
      {"PgUp/PgDn, Home/End", "move by a page, to the first or last row"},
      {"Tab, l / Shift-Tab", "next / previous tab (sites, leaks, threads)"},
      {"1 2 3", "sites, leaks, threads tab"},
      {"s / S (F6)", "next / previous sort order of the tab"},
      {"/ (F4)", "filter by function or module (Enter applies, Esc clears)"},
      {"Esc", "clear the filter"},
      {"Enter", "show or hide the selected row's stack (a site's: with who holds its blocks)"},
      {"b / B", "mark a baseline (sites: LIVE, BLOCKS as changes since) / clear it"},
      {"g (F5)", "ask the process for a leak scan now"},
      {"c", "ask the process to collect (free) its leaked blocks; y confirms"},
      {"p", "back to the process picker"},
      {"r, Ctrl-L", "reload now and redraw the screen"},
      {"? (F1)", "this help"},
      {"q (F10)", "quit"},
  };
  return keys;
}

ProcessScreen::ProcessScreen(Screen& screen, std::unique_ptr<SegmentReader> reader,
                             std::unique_ptr<stats::Snapshot> first)
    : screen_(screen),
      reader_(std::move(reader)),
      snapshot_(std::move(first)),
      spare_(std::make_unique<stats::Snapshot>()) {
  info_ = reader_->info();
  exited_ = !info_.producer_alive;
  last_reload_ = std::chrono::steady_clock::now();
  if (exited_) set_status("the process has exited: these are its last figures", Role::kStatus);
  measure_memory();
  rebuild_rows();
}

void ProcessScreen::measure_memory() {
  // A process that is gone has no /proc entry (or, if its pid was reused, another process's).
  if (exited_)
    rss_ = RssBreakdown{};
  else
    rss_ = measure_rss(info_.pid, *snapshot_, reader_->path());
}

void ProcessScreen::set_status(std::string text, Role role) {
  status_ = std::move(text);
  status_role_ = role;
}

void ProcessScreen::reload() {
  last_reload_ = std::chrono::steady_clock::now();
  std::string error;
  if (reader_->snapshot(*spare_, error)) {
    std::swap(snapshot_, spare_);
    reload_error_.clear();
  } else {
    reload_error_ = error;
  }
  info_ = reader_->info();
  const bool was_exited = exited_;
  exited_ = !info_.producer_alive;
  if (exited_ && !was_exited) {
    set_status(info_.producer_exited ? "the process exited: these are its last figures (q quits)"
                                     : "the process is gone (killed?): these are its last figures (q quits)",
               Role::kError);
  }
  measure_memory();
  rebuild_rows();
}

void ProcessScreen::rebuild_rows() {
  const int t = tab_index();
  rows_ = build_rows(*snapshot_, tab_, sort_[t], filter_, baseline_ ? &*baseline_ : nullptr);
  int index = std::clamp(selected_[t], 0, std::max(0, static_cast<int>(rows_.size()) - 1));
  if (has_selected_key_[t]) {
    for (size_t i = 0; i < rows_.size(); ++i) {
      if (rows_[i].key == selected_key_[t]) {
        index = static_cast<int>(i);
        break;
      }
    }
  }
  select(index);
}

void ProcessScreen::select(int index) {
  const int t = tab_index();
  if (rows_.empty()) {
    selected_[t] = 0;
    return;
  }
  selected_[t] = std::clamp(index, 0, static_cast<int>(rows_.size()) - 1);
  selected_key_[t] = rows_[static_cast<size_t>(selected_[t])].key;
  has_selected_key_[t] = true;
}

ProcessScreen::Outcome ProcessScreen::run() {
  for (;;) {
    if (Screen::interrupted()) return Outcome::kQuit;
    if (std::chrono::steady_clock::now() - last_reload_ >= kScreenReloadInterval) reload();
    if (command_.busy()) {
      if (std::optional<CommandOutcome> done = command_.poll()) {
        if (command_kind_ == stats::Command::kWhy) {
          retainers_.pending = false;
          retainers_.problem = done->ok ? std::string() : done->summary;
          retainers_.lines = std::move(done->lines);
        } else {
          set_status(done->summary, done->ok ? Role::kStatus : Role::kError);
        }
        reload();  // the process published right after answering
      }
    }
    ask_retainers();
    draw();
    const Key key = screen_.read_key(command_.busy() ? 100 : 250);
    if (key.type == Key::kNone) continue;
    if (!handle_key(key)) return outcome_;
  }
}

void ProcessScreen::start_command(stats::Command command) {
  if (exited_) {
    set_status("the process has exited; it cannot scan any more", Role::kError);
    return;
  }
  if (info_.stopped()) {
    set_status(
        fmt::format("the process is {}: it answers once continued (kill -CONT {})", info_.state_name(), info_.pid),
        Role::kError);
    return;
  }
  if (command_.busy()) {
    set_status("a request is already in flight", Role::kError);
    return;
  }
  command_kind_ = command;
  if (!command_.start(info_.pid, command, kCommandTimeoutMs))
    set_status("cannot start the request", Role::kError);
  else
    status_.clear();
}

void ProcessScreen::ask_retainers() {
  if (!detail_ || tab_ != Tab::kSites || rows_.empty() || exited_ || info_.stopped() || command_.busy()) return;
  const stats::Site& site = snapshot_->sites[rows_[static_cast<size_t>(selected_[tab_index()])].index];
  if (site.stack_id == 0 || site.stack_id == retainers_stack_) return;
  retainers_ = RetainersPane{};
  retainers_.pending = true;
  retainers_stack_ = site.stack_id;
  command_kind_ = stats::Command::kWhy;
  if (!command_.start_why(info_.pid, site.stack_id, kRetainerPaths)) {
    retainers_.pending = false;
    retainers_.problem = "cannot start the request";
  }
}

bool ProcessScreen::handle_filter_key(const Key& key) {
  if (is_enter(key)) {
    editing_filter_ = false;
  } else if (key.is(27)) {
    editing_filter_ = false;
    filter_.clear();
    filter_draft_.clear();
  } else if (is_backspace(key)) {
    // Remove one UTF-8 character: continuation bytes are 10xxxxxx.
    while (!filter_draft_.empty() && (static_cast<unsigned char>(filter_draft_.back()) & 0xc0) == 0x80)
      filter_draft_.pop_back();
    if (!filter_draft_.empty()) filter_draft_.pop_back();
  } else if (key.is(21)) {  // Ctrl-U
    filter_draft_.clear();
  } else if (key.type == Key::kCharacter && key.value >= 0x20 && key.value != 0x7f && filter_draft_.size() < 200) {
    char buffer[MB_LEN_MAX];
    std::mbstate_t state{};
    const size_t length = std::wcrtomb(buffer, static_cast<wchar_t>(key.value), &state);
    if (length != static_cast<size_t>(-1)) filter_draft_.append(buffer, length);
  } else {
    return true;
  }
  if (editing_filter_) filter_ = filter_draft_;  // the table follows as you type
  rebuild_rows();
  return true;
}

bool ProcessScreen::handle_key(const Key& key) {
  if (help_) {
    help_ = false;
    return true;
  }
  if (key.is_function(KEY_RESIZE)) return true;  // the next draw lays out the new size
  if (editing_filter_) return handle_filter_key(key);
  if (confirm_collect_) {
    confirm_collect_ = false;
    if (key.is(L'y') || key.is(L'Y'))
      start_command(stats::Command::kCollect);
    else
      set_status("collection cancelled", Role::kStatus);
    return true;
  }
  const int t = tab_index();
  const int count = static_cast<int>(rows_.size());
  if (key.is(L'q') || key.is(L'Q') || key.is_function(KEY_F(10))) {
    outcome_ = Outcome::kQuit;
    return false;
  }
  if (key.is(L'p')) {
    outcome_ = Outcome::kPicker;
    return false;
  }
  if (key.is_function(KEY_UP) || key.is(L'k'))
    select(selected_[t] - 1);
  else if (key.is_function(KEY_DOWN) || key.is(L'j'))
    select(selected_[t] + 1);
  else if (key.is_function(KEY_PPAGE))
    select(selected_[t] - page_);
  else if (key.is_function(KEY_NPAGE))
    select(selected_[t] + page_);
  else if (key.is_function(KEY_HOME))
    select(0);
  else if (key.is_function(KEY_END))
    select(count - 1);
  else if (key.is(L's') || key.is_function(KEY_F(6))) {
    sort_[t] = (sort_[t] + 1) % sort_count(tab_);
    rebuild_rows();
  } else if (key.is(L'S')) {
    sort_[t] = (sort_[t] + sort_count(tab_) - 1) % sort_count(tab_);
    rebuild_rows();
  } else if (key.is(L'/') || key.is_function(KEY_F(4))) {
    editing_filter_ = true;
    filter_draft_ = filter_;
  } else if (key.is(27)) {
    filter_.clear();
    rebuild_rows();
  } else if (key.is(L'\t') || key.is(L'l') || key.is_function(KEY_BTAB) || key.is(L'1') || key.is(L'2') ||
             key.is(L'3')) {
    if (key.is(L'1') || key.is(L'2') || key.is(L'3'))
      tab_ = static_cast<Tab>(key.value - L'1');
    else
      tab_ = key.is_function(KEY_BTAB) ? previous_tab(tab_) : next_tab(tab_);
    rebuild_rows();
  } else if (is_enter(key)) {
    detail_ = !detail_;
    retainers_stack_ = 0;  // opened again: asked again, the heap has moved on
  } else if (key.is(L'b')) {
    baseline_.emplace(*snapshot_, std::chrono::steady_clock::now());
    set_status("baseline marked: the sites' LIVE and BLOCKS now show changes since this moment (B clears)",
               Role::kStatus);
    rebuild_rows();
  } else if (key.is(L'B')) {
    if (baseline_) set_status("baseline cleared: the sites show what they hold", Role::kStatus);
    baseline_.reset();
    rebuild_rows();
  } else if (key.is(L'g') || key.is_function(KEY_F(5))) {
    start_command(stats::Command::kScan);
  } else if (key.is(L'c')) {
    if (exited_)
      set_status("the process has exited; it cannot collect any more", Role::kError);
    else if (command_.busy())
      set_status("a request is already in flight", Role::kError);
    else
      confirm_collect_ = true;
  } else if (key.is(L'r') || key.is(12)) {
    clearok(curscr, TRUE);
    reload();
  } else if (key.is(L'?') || key.is_function(KEY_F(1))) {
    help_ = true;
  }
  return true;
}

TableView ProcessScreen::table_view() {
  const int t = tab_index();
  const bool retainers = tab_ == Tab::kSites && retainers_stack_ != 0 && !rows_.empty() &&
                         snapshot_->sites[rows_[static_cast<size_t>(selected_[t])].index].stack_id == retainers_stack_;
  return TableView{tab_,
                   sort_[t],
                   filter_,
                   rows_,
                   selected_[t],
                   &top_[t],
                   retainers ? &retainers_ : nullptr,
                   baseline_ ? &*baseline_ : nullptr,
                   std::chrono::steady_clock::now()};
}

ProcessScreen::Layout ProcessScreen::layout() {
  Layout l;
  const int rows = screen_.rows();
  const bool compact = screen_.compact();
  l.figures = figure_lines(compact);
  l.footer = rows - 1;
  l.status = rows - 2;
  // Title and figures, tabs, column header, status, footer: the rest is chart and table.
  const int fixed = l.figures + 4;
  int remaining = rows - fixed;
  if (!compact) {
    l.chart_height = std::min({13, remaining - 8, remaining * 45 / 100});
    if (l.chart_height < 4) l.chart_height = 0;
  }
  l.chart_top = l.figures;
  l.tabs = l.figures + l.chart_height;
  l.header = l.tabs + 1;
  l.table_top = l.header + 1;
  const int area = l.status - l.table_top;
  l.table_height = area;
  if (detail_ && area >= kMinimumTableRows + 3) {
    // The table keeps its rows up to two fifths of the area (at least kMinimumTableRows); the
    // detail pane gets the rest, as much as the stack needs.
    const int table_rows = std::max(kMinimumTableRows, std::min(static_cast<int>(rows_.size()), area * 2 / 5));
    l.detail_height = std::min(detail_lines_needed(*snapshot_, table_view()), area - table_rows);
    l.table_height = area - l.detail_height;
    l.detail_top = l.table_top + l.table_height;
  }
  return l;
}

void ProcessScreen::draw() {
  screen_.clear_all();
  screen_.cursor(-1, 0);
  if (screen_.too_small()) {
    screen_.draw_too_small();
    screen_.present();
    return;
  }
  const Layout l = layout();
  page_ = std::max(1, l.table_height - 1);
  draw_figures(screen_, info_, *snapshot_, rss_, exited_, screen_.compact());
  if (l.chart_height > 0) draw_charts(screen_, *snapshot_, l.chart_top, l.chart_height);
  const TableView view = table_view();
  draw_tab_bar(screen_, *snapshot_, view, l.tabs);
  draw_table(screen_, *snapshot_, view, l.header, l.table_top, l.table_height);
  if (l.detail_height > 0) draw_detail(screen_, *snapshot_, view, l.detail_top, l.detail_height);
  draw_status(l.status);
  const bool utf8 = screen_.utf8();
  screen_.draw_footer(l.footer, {{"F1", "Help"},
                                 {"/", "Filter"},
                                 {"s", "Sort"},
                                 {"Tab", "View"},
                                 {utf8 ? "\u23ce" : "Enter", "Detail"},
                                 {"b", "Mark"},
                                 {"g", "Scan"},
                                 {"c", "Collect"},
                                 {"p", "Procs"},
                                 {"q", "Quit"}});
  if (help_) draw_help();
  if (editing_filter_ && !help_) {
    const int x = std::min(screen_.columns() - 1, screen_.width_of(" Filter: " + filter_draft_));
    screen_.cursor(l.status, x);
  }
  screen_.present();
}

void ProcessScreen::draw_status(int y) {
  const int width = screen_.columns();
  if (editing_filter_) {
    screen_.draw_segments(
        y, 0, width,
        {{" Filter: ", Role::kLabel}, {filter_draft_, Role::kValue}, {"   (Enter applies, Esc clears)", Role::kDim}});
    return;
  }
  if (confirm_collect_) {
    screen_.put(y, 0, fmt::format(" Collect: free the blocks pid {} leaked, in the process? (y/N)", info_.pid), width,
                Role::kError);
    return;
  }
  if (command_.busy()) {
    static const char* const spinner[] = {"|", "/", "-", "\\"};
    const double seconds = command_.elapsed_seconds();
    screen_.put(y, 0,
                fmt::format(" {} {} pid {}... {:.1f} s", spinner[static_cast<int>(seconds * 8) % 4],
                            command_kind_ == stats::Command::kCollect ? "collecting"
                            : command_kind_ == stats::Command::kWhy   ? "asking who holds the site in"
                                                                      : "scanning",
                            info_.pid, seconds),
                width, Role::kStatus);
    return;
  }
  if (!reload_error_.empty() && !exited_) {
    screen_.put(y, 0, " " + reload_error_, width, Role::kError);
    return;
  }
  if (!status_.empty()) screen_.put(y, 0, " " + status_, width, status_role_);
}

void ProcessScreen::draw_help() {
  const std::vector<std::pair<std::string, std::string>>& keys = key_help();
  const int width = std::min(screen_.columns() - 2, 92);
  const int height = std::min(screen_.rows() - 2, static_cast<int>(keys.size()) + 4);
  const int top = (screen_.rows() - height) / 2, left = (screen_.columns() - width) / 2;
  screen_.put(top, left, " heapkeeper view: keys", width, Role::kTitle, true);
  for (int i = 1; i < height; ++i) screen_.put(top + i, left, "", width, Role::kNormal, true);
  for (int i = 0; i < static_cast<int>(keys.size()) && i + 2 < height - 1; ++i) {
    screen_.put(top + 2 + i, left + 2, keys[static_cast<size_t>(i)].first, 22, Role::kValue);
    screen_.put(top + 2 + i, left + 25, keys[static_cast<size_t>(i)].second, width - 26, Role::kNormal);
  }
  screen_.put(top + height - 1, left, " any key closes this help", width, Role::kFooterLabel, true);
}

}  // namespace heapkeeper::view
