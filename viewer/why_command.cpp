// `heapkeeper why PID TARGET`: who holds a block, or the blocks of an allocation site. The process
// scans and answers with its shortest retainer paths (collector/why_json.h); this prints them.
#include <fmt/core.h>

#include <nlohmann/json.hpp>
#include <string>

#include "report/json_text.h"
#include "stats/shm_layout.h"
#include "viewer/process_commands.h"
#include "viewer/segment_reader.h"

namespace heapkeeper::view {
namespace {

// Strings of the answer come escaped (report/json_text.h); made safe for a terminal here.
std::string printable(const std::string& json_string) { return report::printable_json_text(json_string); }

std::string text_of(const nlohmann::json& doc, const char* key) {
  const auto found = doc.find(key);
  return found != doc.end() && found->is_string() ? found->get<std::string>() : std::string();
}

uint64_t number_of(const nlohmann::json& doc, const char* key) {
  const auto found = doc.find(key);
  return found != doc.end() && found->is_number_unsigned() ? found->get<uint64_t>() : 0;
}

std::string root_text(const nlohmann::json& root) {
  const std::string kind = text_of(root, "kind"), module = text_of(root, "module");
  std::string name = text_of(root, "name");
  const uint64_t offset = number_of(root, "offset");
  if (kind == "global") return fmt::format("global {} in {} (+0x{:x})", name, module, offset);
  if (kind == "stack") return fmt::format("stack of {}, {} bytes above its stack pointer", name, offset);
  if (kind == "register") return name;
  if (kind == "anonymous") return fmt::format("{} (+0x{:x})", name, offset);
  return name;
}

std::string site_text(const nlohmann::json& site) {
  std::string text = text_of(site, "function");
  const std::string file = text_of(site, "file");
  if (!file.empty()) text += fmt::format(" {}:{}", file, number_of(site, "line"));
  return text;
}

}  // namespace

int explain_retainers(pid_t pid, const std::string& target, bool json, size_t paths) {
  SegmentReader reader;
  std::string error, response;
  if (!reader.open(pid, true, error)) {
    fmt::print(stderr, "heapkeeper: {}\n", error);
    return 1;
  }
  if (refuse_if_stopped(reader, pid, "ask")) return 1;
  if (target.empty() || target.find('\n') != std::string::npos || target.size() > stats::kArgumentCapacity - 8) {
    fmt::print(stderr, "heapkeeper: the target must be a block address (0x...) or a function name on one line\n");
    return 2;
  }
  if (!reader.command(stats::Command::kWhy, 60000, response, error, target + "\n" + std::to_string(paths))) {
    fmt::print(stderr, "heapkeeper: why {} in pid {}: {}\n", printable(report::json_text(target)), pid, error);
    return 1;
  }
  if (json) {
    fmt::print("{}\n", response);
    return 0;
  }
  const nlohmann::json doc = nlohmann::json::parse(response, nullptr, false);
  if (!doc.is_object() || !doc.contains("target") || !doc.contains("paths") || !doc["paths"].is_array()) {
    fmt::print(stderr, "heapkeeper: pid {} sent an unreadable answer\n", pid);
    return 1;
  }
  const nlohmann::json& t = doc["target"];
  const std::string name = t.contains("address") ? text_of(t, "address") : text_of(t, "function");
  fmt::print("pid {}: {} ({} in {} block{}) retains {}; {} shortest retainer path{}:\n", pid, printable(name),
             human_bytes(number_of(t, "bytes")), number_of(t, "blocks"), number_of(t, "blocks") == 1 ? "" : "s",
             human_bytes(number_of(t, "retained_bytes")), doc["paths"].size(), doc["paths"].size() == 1 ? "" : "s");
  size_t index = 0;
  for (const auto& path : doc["paths"]) {
    if (!path.is_object() || !path.contains("root") || !path.contains("chain")) continue;
    fmt::print("  #{} {}\n", ++index, printable(root_text(path["root"])));
    for (const auto& step : path["chain"]) {
      fmt::print("       -> {}  {:>10}  {}\n", printable(text_of(step, "address")),
                 human_bytes(number_of(step, "size")),
                 printable(step.contains("site") ? site_text(step["site"]) : std::string("??")));
    }
  }
  return 0;
}

}  // namespace heapkeeper::view
