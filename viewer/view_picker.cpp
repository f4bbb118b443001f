// Implementation of the process picker (see view_picker.h).
#include "viewer/view_picker.h"

#include <curses.h>
#include <fmt/core.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>

#include "viewer/view_format.h"

namespace heapkeeper::view {
namespace {

constexpr auto kPickerReloadInterval = std::chrono::milliseconds(1000);
constexpr auto kJumpPause = std::chrono::milliseconds(1500);  // a pause starts a new pid

std::string row_text(const std::string& pid, const std::string& state, const std::string& uptime,
                     const std::string& live, const std::string& leaked, const std::string& program) {
  return fmt::format(" {:>8}  {:<10}  {:>9}  {:>11}  {:>11}  {}", pid, state, uptime, live, leaked, program);
}

}  // namespace

ProcessPicker::ProcessPicker(Screen& screen) : screen_(screen) {}

void ProcessPicker::reload() {
  entries_.clear();
  auto snapshot = std::make_unique<stats::Snapshot>();
  for (const SegmentFile& file : SegmentReader::list_files()) {
    Entry entry;
    entry.pid = file.pid;
    entry.file = file;
    SegmentReader reader;
    std::string error;
    if (!reader.open_file(file, false, error)) {
      entry.state = "unreadable";
      entry.uptime = entry.live = entry.leaked = "-";
      entry.program = error;
      entries_.push_back(std::move(entry));
      continue;
    }
    const SegmentInfo info = reader.info();
    const bool have = reader.snapshot(*snapshot, error);
    entry.readable = true;
    entry.state = info.state_name();
    entry.uptime = have ? format_duration(snapshot->uptime_ns) : "-";
    entry.live = have ? format_bytes(snapshot->live_bytes) : "-";
    const bool scanned = have && snapshot->scan_count > 0;
    entry.leaked = scanned ? format_bytes(snapshot->scans[snapshot->scan_count - 1].leaked_bytes) : "-";
    entry.program = info.program;
    if (!info.command_line.empty()) entry.program += "  [" + info.command_line + "]";
    entries_.push_back(std::move(entry));
  }
  // Processes it can show first: a screenful of other users' or dead processes' files must not
  // push them out of sight.
  std::stable_partition(entries_.begin(), entries_.end(), [](const Entry& entry) { return entry.readable; });
  // The selection follows its pid when processes come and go.
  selected_ = std::min(selected_, entries_.empty() ? 0 : entries_.size() - 1);
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].pid == selected_pid_) selected_ = i;
  }
  if (!entries_.empty()) selected_pid_ = entries_[selected_].pid;
}

bool ProcessPicker::open_selected(Choice& choice) {
  if (entries_.empty()) return false;
  const pid_t pid = entries_[selected_].pid;
  auto reader = std::make_unique<SegmentReader>();
  auto snapshot = std::make_unique<stats::Snapshot>();
  std::string error;
  // Opened for commands: the view is a watcher, whose heartbeat makes the process publish its
  // site and leak tables (and g/c send commands through the same segment).
  if (!reader->open_file(entries_[selected_].file, true, error) || !reader->snapshot(*snapshot, error)) {
    status_ = fmt::format("pid {}: {}", pid, error);
    return false;
  }
  choice.reader = std::move(reader);
  choice.snapshot = std::move(snapshot);
  return true;
}

void ProcessPicker::jump(char digit) {
  const auto now = std::chrono::steady_clock::now();
  if (now - jump_time_ > kJumpPause || jump_.size() >= 10) jump_.clear();
  jump_time_ = now;
  jump_ += digit;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (std::to_string(entries_[i].pid).rfind(jump_, 0) == 0) {
      selected_ = i;
      status_.clear();
      return;
    }
  }
  status_ = "no tracked pid starts with " + jump_;
}

ProcessPicker::Choice ProcessPicker::run() {
  Choice choice;
  reload();
  auto last_reload = std::chrono::steady_clock::now();
  for (;;) {
    if (Screen::interrupted()) return choice;
    if (std::chrono::steady_clock::now() - last_reload >= kPickerReloadInterval) {
      reload();
      last_reload = std::chrono::steady_clock::now();
    }
    draw();
    const Key key = screen_.read_key(250);
    if (key.type == Key::kNone || key.is_function(KEY_RESIZE)) continue;
    const size_t count = entries_.size();
    const size_t page = static_cast<size_t>(std::max(1, screen_.rows() - 5));
    if (key.is(L'q') || key.is(L'Q') || key.is_function(KEY_F(10))) return choice;
    if (key.is_function(KEY_UP) || key.is(L'k'))
      selected_ = selected_ > 0 ? selected_ - 1 : 0;
    else if (key.is_function(KEY_DOWN) || key.is(L'j'))
      selected_ = count == 0 ? 0 : std::min(selected_ + 1, count - 1);
    else if (key.is_function(KEY_PPAGE))
      selected_ = selected_ > page ? selected_ - page : 0;
    else if (key.is_function(KEY_NPAGE))
      selected_ = count == 0 ? 0 : std::min(selected_ + page, count - 1);
    else if (key.is_function(KEY_HOME))
      selected_ = 0;
    else if (key.is_function(KEY_END))
      selected_ = count == 0 ? 0 : count - 1;
    else if (key.is(L'r') || key.is(12)) {
      clearok(curscr, TRUE);
      reload();
    } else if (key.type == Key::kCharacter && key.value >= L'0' && key.value <= L'9') {
      jump(static_cast<char>(key.value));
    } else if (key.is(L'\n') || key.is(L'\r') || key.is_function(KEY_ENTER)) {
      if (open_selected(choice)) return choice;
    }
    if (selected_ < entries_.size()) selected_pid_ = entries_[selected_].pid;
  }
}

void ProcessPicker::draw() {
  screen_.clear_all();
  if (screen_.too_small()) {
    screen_.draw_too_small();
    screen_.present();
    return;
  }
  const int width = screen_.columns(), rows = screen_.rows();
  const size_t running = static_cast<size_t>(
      std::count_if(entries_.begin(), entries_.end(), [](const Entry& e) { return e.state == "running"; }));
  screen_.put(0, 0, fmt::format(" heapkeeper: tracked processes ({} running, {} in all)", running, entries_.size()),
              width, Role::kTitle, true);
  screen_.put(1, 0, row_text("PID", "STATE", "UPTIME", "LIVE", "LEAKED", "PROGRAM"), width, Role::kColumnHeader, true);
  const int top = 2, height = rows - 4;
  if (entries_.empty()) {
    screen_.put(top, 1, "no tracked processes of this user: start one with `heapkeeper run -- PROGRAM`", width - 1,
                Role::kDim);
  }
  const int selected = static_cast<int>(selected_);
  if (selected < top_) top_ = selected;
  if (selected >= top_ + height) top_ = selected - height + 1;
  for (int line = 0; line < height; ++line) {
    const size_t index = static_cast<size_t>(top_) + static_cast<size_t>(line);
    if (index >= entries_.size()) break;
    const Entry& e = entries_[index];
    const Role role = index == selected_ ? Role::kSelected : e.readable ? Role::kNormal : Role::kDim;
    screen_.put(
        top + line, 0,
        printable(row_text(std::to_string(e.pid), e.state, e.uptime, e.live, e.leaked, e.program), screen_.utf8()),
        width, role, index == selected_);
  }
  if (!status_.empty()) screen_.put(rows - 2, 0, " " + status_, width, Role::kError);
  const bool utf8 = screen_.utf8();
  screen_.draw_footer(rows - 1, {{utf8 ? "\u2191\u2193" : "Up/Dn", "Move"},
                                 {utf8 ? "\u23ce" : "Enter", "Open"},
                                 {"0-9", "Jump to pid"},
                                 {"r", "Refresh"},
                                 {"q", "Quit"}});
  screen_.present();
}

}  // namespace heapkeeper::view
