// Implementation of `heapkeeper trim` (see trim_command.h).
#include "viewer/trim_command.h"

#include <fmt/core.h>

#include <nlohmann/json.hpp>
#include <string>

#include "stats/shm_layout.h"
#include "viewer/process_commands.h"
#include "viewer/rss_breakdown.h"
#include "viewer/segment_reader.h"

namespace heapkeeper::view {
namespace {

uint64_t number_at(const nlohmann::json& doc, const char* object, const char* key) {
  const auto part = doc.find(object);
  if (part == doc.end() || !part->is_object()) return 0;
  const auto found = part->find(key);
  return found != part->end() && found->is_number_unsigned() ? found->get<uint64_t>() : 0;
}

std::string signed_bytes(int64_t bytes) {
  return (bytes < 0 ? "+" : "-") + human_bytes(static_cast<uint64_t>(bytes < 0 ? -bytes : bytes));
}

}  // namespace

int trim_process(pid_t pid, bool json) {
  if (pid <= 0) {
    fmt::print(stderr, "heapkeeper: trim: {} is not a process id (a number above 0)\n", pid);
    return 2;
  }
  SegmentReader reader;
  std::string error, response;
  if (!reader.open(pid, true, error)) {
    fmt::print(stderr, "heapkeeper: {}\n", error);
    return 1;
  }
  if (!reader.info().producer_alive) {
    fmt::print(stderr, "heapkeeper: cannot trim pid {}: the process is {}\n", pid, reader.info().state_name());
    return 1;
  }
  if (refuse_if_stopped(reader, pid, "trim")) return 1;
  uint64_t rss_before = 0, rss_after = 0;
  if (!read_rss(pid, rss_before, error)) {
    fmt::print(stderr, "heapkeeper: trim of pid {}: {}\n", pid, error);
    return 1;
  }
  if (!reader.command(stats::Command::kTrim, 60000, response, error)) {
    fmt::print(stderr, "heapkeeper: trim of pid {} failed: {}\n", pid, error);
    return 1;
  }
  const nlohmann::json answer = nlohmann::json::parse(response, nullptr, false);
  if (!answer.is_object() || !answer.contains("returned_bytes") || !answer["returned_bytes"].is_number_unsigned()) {
    fmt::print(stderr, "heapkeeper: pid {} sent an unreadable answer\n", pid);
    return 1;
  }
  if (const auto purged = answer.find("purged");
      purged == answer.end() || !purged->is_boolean() || !purged->get<bool>()) {
    fmt::print(stderr, "heapkeeper: trim of pid {} failed: its allocator refused to purge\n", pid);
    return 1;
  }
  if (!read_rss(pid, rss_after, error)) {
    fmt::print(stderr, "heapkeeper: trim of pid {}: {}\n", pid, error);
    return 1;
  }
  const uint64_t returned = answer["returned_bytes"].get<uint64_t>();
  const uint64_t kept_before = number_at(answer, "before", "dirty_bytes") + number_at(answer, "before", "muzzy_bytes");
  const uint64_t kept_after = number_at(answer, "after", "dirty_bytes") + number_at(answer, "after", "muzzy_bytes");
  const uint64_t own_before =
      number_at(answer, "before", "internal_dirty_bytes") + number_at(answer, "before", "internal_muzzy_bytes");
  const auto drop = static_cast<int64_t>(rss_before) - static_cast<int64_t>(rss_after);
  if (json) {
    nlohmann::json doc = {{"pid", pid},
                          {"returned_bytes", returned},
                          {"rss_before_bytes", rss_before},
                          {"rss_after_bytes", rss_after},
                          {"rss_drop_bytes", drop},
                          {"allocator",
                           {{"before", answer.value("before", nlohmann::json::object())},
                            {"after", answer.value("after", nlohmann::json::object())}}}};
    fmt::print("{}\n", doc.dump(2));
    return 0;
  }
  fmt::print("pid {}: returned {} to the system (freed pages the allocator kept: {} -> {}, heapkeeper's own {})\n", pid,
             human_bytes(returned), human_bytes(kept_before), human_bytes(kept_after), human_bytes(own_before));
  fmt::print("  RSS {} -> {} ({})\n", human_bytes(rss_before), human_bytes(rss_after), signed_bytes(drop));
  return 0;
}

}  // namespace heapkeeper::view
