// Implementation of `heapkeeper view` (see view_command.h): opening the first segment before
// curses starts, then alternating between the picker and process screens until the user quits.
#include "viewer/view_command.h"

#include <fmt/core.h>

#include <chrono>
#include <memory>
#include <thread>

#include "viewer/segment_reader.h"
#include "viewer/view_picker.h"
#include "viewer/view_process_screen.h"
#include "viewer/view_screen.h"

namespace heapkeeper::view {
namespace {

// A process that has just started may not have published yet: give it a few publishing intervals.
constexpr auto kFirstSnapshotWait = std::chrono::seconds(3);

bool open_process(pid_t pid, std::unique_ptr<SegmentReader>& reader, std::unique_ptr<stats::Snapshot>& snapshot,
                  std::string& error) {
  reader = std::make_unique<SegmentReader>();
  snapshot = std::make_unique<stats::Snapshot>();
  // Opened for commands: the view is a watcher, whose heartbeat makes the process publish its
  // site and leak tables (see SegmentReader::snapshot).
  if (!reader->open(pid, true, error)) return false;
  const auto deadline = std::chrono::steady_clock::now() + kFirstSnapshotWait;
  while (!reader->snapshot(*snapshot, error)) {
    if (std::chrono::steady_clock::now() >= deadline || !reader->info().producer_alive) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return true;
}

}  // namespace

std::string view_key_help() {
  std::string text = "Keys:\n";
  for (const auto& [key, meaning] : ProcessScreen::key_help()) text += fmt::format("  {:<22}{}\n", key, meaning);
  return text;
}

int view_processes(pid_t pid) {
  std::unique_ptr<SegmentReader> reader;
  std::unique_ptr<stats::Snapshot> snapshot;
  std::string error;
  if (pid != 0 && !open_process(pid, reader, snapshot, error)) {
    fmt::print(stderr, "heapkeeper: {}\n", error);
    return 1;
  }
  std::unique_ptr<Screen> screen = Screen::start(error);
  if (screen == nullptr) {
    fmt::print(stderr, "heapkeeper: {}\n", error);
    return 1;
  }
  for (;;) {
    if (reader == nullptr) {
      ProcessPicker::Choice choice = ProcessPicker(*screen).run();
      if (choice.reader == nullptr) return 0;
      reader = std::move(choice.reader);
      snapshot = std::move(choice.snapshot);
    }
    ProcessScreen process(*screen, std::move(reader), std::move(snapshot));
    if (process.run() == ProcessScreen::Outcome::kQuit) return 0;
  }
}

}  // namespace heapkeeper::view
