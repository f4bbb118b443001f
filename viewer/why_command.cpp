// `heapkeeper why PID TARGET`: who holds a block, or the blocks of an allocation site (see
// why_command.h). The process scans and answers with raw facts; this names and prints them.
#include "viewer/why_command.h"

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <string>

#include "analysis/function_ranges.h"
#include "analysis/module_symbolizer.h"
#include "analysis/why_renderer.h"
#include "report/json_text.h"
#include "report/raw_why.h"
#include "stats/shm_layout.h"
#include "viewer/json_fields.h"
#include "viewer/process_commands.h"
#include "viewer/segment_reader.h"

namespace heapkeeper::view {
namespace {

// Strings of the answer come escaped (report/json_text.h); made safe for a terminal here.
std::string printable(const std::string& json_string) { return report::printable_json_text(json_string); }

uint64_t number_of(const nlohmann::json& doc, const char* key) {
  const auto found = doc.find(key);
  if (found == doc.end() || !found->is_number_integer()) return 0;
  return found->is_number_unsigned() ? found->get<uint64_t>()
                                     : static_cast<uint64_t>(std::max<int64_t>(found->get<int64_t>(), 0));
}

// Sends `request` and names the answer.
bool ask(SegmentReader& reader, pid_t pid, const report::WhyRequest& request, nlohmann::json target_json,
         const std::string& shown, analysis::ModuleSymbolizer& symbolizer, nlohmann::json& doc, std::string& error) {
  const std::string argument = report::serialize_why_request(request);
  if (argument.size() > stats::kArgumentCapacity) {
    error = fmt::format("{} names {} functions in pid {}, more than one request can carry", shown,
                        request.ranges.size(), pid);
    return false;
  }
  std::string response;
  if (!reader.command(stats::Command::kWhy, 60000, response, error, argument)) return false;
  report::RawWhy why;
  std::string problem;
  if (!report::parse_raw_why(response, why, problem)) {
    error = "pid " + std::to_string(pid) + " sent " + problem;
    return false;
  }
  switch (why.outcome) {
    case report::RawWhyOutcome::kFound:
      break;
    case report::RawWhyOutcome::kNoSiteBlock:
      error = "no reachable block was allocated under " + shown;
      return false;
    case report::RawWhyOutcome::kLeaked:
      error = shown + " is in a block nothing reachable holds: it is leaked (heapkeeper report)";
      return false;
    case report::RawWhyOutcome::kNoLiveBlock:
      error = shown + " is in no live block";
      return false;
  }
  doc = analysis::render_why_json(why, std::move(target_json), pid, symbolizer);
  return true;
}

}  // namespace

std::string root_text(const nlohmann::json& root) {
  const std::string kind = string_field(root, "kind"), module = string_field(root, "module");
  std::string name = string_field(root, "name");
  const uint64_t offset = number_of(root, "offset");
  if (kind == "global") return fmt::format("global {} in {} (+0x{:x})", name, module, offset);
  if (kind == "stack") {
    const std::string function = string_field(root, "function");
    if (function.empty() || function == "??")
      return fmt::format("stack of {}, {} bytes above its stack pointer", name, offset);
    return fmt::format("stack of {}, in {}'s frame, {} bytes above its stack pointer", name, function, offset);
  }
  if (kind == "register") return name;
  if (kind == "anonymous") return fmt::format("{} (+0x{:x})", name, offset);
  return name;
}

std::string site_text(const nlohmann::json& site) {
  std::string text = string_field(site, "function");
  const std::string file = string_field(site, "file");
  if (!file.empty()) text += fmt::format(" {}:{}", file, number_of(site, "line"));
  if (const std::string python = string_field(site, "python"); !python.empty()) text += " from " + python;
  return text;
}

bool ask_why(SegmentReader& reader, pid_t pid, const std::string& target, size_t paths,
             analysis::ModuleSymbolizer& symbolizer, nlohmann::json& doc, std::string& error) {
  const std::string shown = printable(report::json_text(target));
  if (target.empty() || target.find('\n') != std::string::npos) {
    error = "the target must be a block address (0x...) or a function name on one line";
    return false;
  }
  report::WhyRequest request;
  request.paths = paths;
  nlohmann::json target_json;
  if (target.rfind("0x", 0) == 0) {
    char* end = nullptr;
    errno = 0;
    request.address = std::strtoull(target.c_str() + 2, &end, 16);
    if (target.size() == 2 || end == nullptr || *end != '\0' || request.address == 0 || errno == ERANGE) {
      error = "'" + shown + "' is not an address";
      return false;
    }
    target_json["address"] = fmt::format("0x{:x}", request.address);
  } else {
    std::string problem;
    request.ranges = analysis::function_code_ranges(pid, target, problem);
    if (!problem.empty()) {
      error = problem;
      return false;
    }
    if (request.ranges.empty()) {
      error = "no reachable block was allocated under " + shown + ": no module of pid " + std::to_string(pid) +
              " defines a function of that name";
      return false;
    }
    target_json["function"] = report::json_text(target);
  }
  return ask(reader, pid, request, std::move(target_json), shown, symbolizer, doc, error);
}

bool ask_why_site(SegmentReader& reader, pid_t pid, uint32_t stack_id, size_t paths,
                  analysis::ModuleSymbolizer& symbolizer, nlohmann::json& doc, std::string& error) {
  report::WhyRequest request;
  request.paths = paths;
  request.stack_id = stack_id;
  return ask(reader, pid, request, {{"stack", stack_id}}, "the site", symbolizer, doc, error);
}

std::vector<std::string> why_text_lines(const nlohmann::json& doc) {
  std::vector<std::string> lines;
  const nlohmann::json& t = doc["target"];
  std::string name = t.contains("address") ? string_field(t, "address") : string_field(t, "function");
  if (name.empty()) name = "the site";
  lines.push_back(fmt::format("{} ({} in {} block{}) retains {}; {} shortest retainer path{}:", name,
                              human_bytes(number_of(t, "bytes")), number_of(t, "blocks"),
                              number_of(t, "blocks") == 1 ? "" : "s", human_bytes(number_of(t, "retained_bytes")),
                              doc["paths"].size(), doc["paths"].size() == 1 ? "" : "s"));
  size_t index = 0;
  for (const auto& path : doc["paths"]) {
    lines.push_back(fmt::format("  #{} {}", ++index, root_text(path["root"])));
    for (const auto& step : path["chain"]) {
      lines.push_back(fmt::format("       -> {}  {:>10}  {}", string_field(step, "address"),
                                  human_bytes(number_of(step, "size")), site_text(step["site"])));
    }
  }
  return lines;
}

int explain_retainers(pid_t pid, const std::string& target, bool json, size_t paths) {
  SegmentReader reader;
  std::string error;
  if (!reader.open(pid, true, error)) {
    fmt::print(stderr, "heapkeeper: {}\n", error);
    return 1;
  }
  if (refuse_if_stopped(reader, pid, "ask")) return 1;
  analysis::ModuleSymbolizer symbolizer;
  nlohmann::json doc;
  if (!ask_why(reader, pid, target, paths, symbolizer, doc, error)) {
    fmt::print(stderr, "heapkeeper: why {} in pid {}: {}\n", printable(report::json_text(target)), pid, error);
    return 1;
  }
  if (json) {
    fmt::print("{}\n", doc.dump());
    return 0;
  }
  const std::vector<std::string> lines = why_text_lines(doc);
  fmt::print("pid {}: {}\n", pid, printable(lines.front()));
  for (size_t i = 1; i < lines.size(); ++i) fmt::print("{}\n", printable(lines[i]));
  return 0;
}

}  // namespace heapkeeper::view
