// Implementation of the live view's background requests (see view_background_command.h).
#include "viewer/view_background_command.h"

#include <fmt/core.h>

#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "analysis/module_symbolizer.h"
#include "viewer/segment_reader.h"
#include "viewer/view_format.h"
#include "viewer/why_command.h"

namespace heapkeeper::view {

struct BackgroundCommand::Shared {
  std::mutex mutex;
  bool done = false;
  CommandOutcome outcome;
};

bool BackgroundCommand::start(pid_t pid, stats::Command command, int timeout_ms) {
  if (shared_ != nullptr) return false;
  shared_ = std::make_shared<Shared>();
  started_ = std::chrono::steady_clock::now();
  std::thread([shared = shared_, pid, command, timeout_ms] {
    CommandOutcome outcome;
    SegmentReader reader;
    std::string error, response;
    if (!reader.open(pid, true, error)) {
      outcome.summary = error;
    } else if (!reader.command(command, timeout_ms, response, error)) {
      outcome.summary = fmt::format("{} of pid {} failed: {}",
                                    command == stats::Command::kCollect ? "collection" : "scan", pid, error);
    } else {
      outcome = summarise(command, pid, response);
    }
    std::lock_guard<std::mutex> lock(shared->mutex);
    shared->outcome = std::move(outcome);
    shared->done = true;
  }).detach();
  return true;
}

bool BackgroundCommand::start_why(pid_t pid, uint32_t stack_id, size_t paths) {
  if (shared_ != nullptr) return false;
  shared_ = std::make_shared<Shared>();
  started_ = std::chrono::steady_clock::now();
  std::thread([shared = shared_, pid, stack_id, paths] {
    CommandOutcome outcome;
    SegmentReader reader;
    std::string error;
    nlohmann::json doc;
    analysis::ModuleSymbolizer symbolizer;
    if (!reader.open(pid, true, error) || !ask_why_site(reader, pid, stack_id, paths, symbolizer, doc, error)) {
      outcome.summary = error;
    } else {
      outcome.ok = true;
      outcome.lines = why_text_lines(doc);
      outcome.summary = outcome.lines.front();
    }
    std::lock_guard<std::mutex> lock(shared->mutex);
    shared->outcome = std::move(outcome);
    shared->done = true;
  }).detach();
  return true;
}

double BackgroundCommand::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
}

std::optional<CommandOutcome> BackgroundCommand::poll() {
  const std::shared_ptr<Shared> shared = shared_;  // outlives the lock below
  if (shared == nullptr) return std::nullopt;
  std::lock_guard<std::mutex> lock(shared->mutex);
  if (!shared->done) return std::nullopt;
  shared_.reset();
  return std::move(shared->outcome);
}

CommandOutcome BackgroundCommand::summarise(stats::Command command, pid_t pid, const std::string& response) {
  CommandOutcome outcome;
  const nlohmann::json doc = nlohmann::json::parse(response, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("scan") || !doc["scan"].is_object()) {
    outcome.summary = fmt::format("pid {} sent an unreadable answer", pid);
    return outcome;
  }
  const nlohmann::json& scan = doc["scan"];
  auto number = [&](const char* name) -> uint64_t {
    const auto it = scan.find(name);
    return it != scan.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
  };
  const auto pause = scan.find("pause_ms");
  const double pause_ms = pause != scan.end() && pause->is_number() ? pause->get<double>() : 0.0;
  outcome.ok = true;
  outcome.summary =
      fmt::format("scan #{}: {} leaked in {} blocks ({} new), {} reachable, pause {:.1f} ms", number("number"),
                  format_bytes(number("leaked_bytes")), format_count(number("leaked_blocks")),
                  format_count(number("new_leaked_blocks")), format_count(number("reachable_blocks")), pause_ms);
  if (command == stats::Command::kCollect) {
    outcome.summary = fmt::format("collection: reclaimed {} in {} blocks; {}", format_bytes(number("reclaimed_bytes")),
                                  format_count(number("reclaimed_blocks")), outcome.summary);
  }
  return outcome;
}

}  // namespace heapkeeper::view
