// Implementation of `heapkeeper diff` (see diff_command.h).
#include "viewer/diff_command.h"

#include <fmt/core.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "report/json_text.h"
#include "stats/shm_layout.h"
#include "viewer/json_fields.h"
#include "viewer/process_commands.h"
#include "viewer/process_id.h"
#include "viewer/report_document.h"
#include "viewer/segment_reader.h"

namespace heapkeeper::view {
namespace {

using nlohmann::json;

// A report from a file, or from process PID (all digits) through its segment. "" or the problem.
std::string load(const std::string& source, json& doc) {
  std::string text, problem;
  if (names_a_process(source)) {
    const pid_t pid = parse_process_id(source);
    if (pid == 0) return process_id_refusal(source);
    SegmentReader reader;
    if (!reader.open(pid, true, problem)) return problem;
    if (reader.info().stopped()) return "pid " + source + " is stopped (continue it with kill -CONT " + source + ")";
    if (!reader.command(stats::Command::kReport, 60000, text, problem))
      return "report of pid " + source + ": " + problem;
  } else if (problem = read_report_file(source, text); !problem.empty()) {
    return source + ": " + problem;
  }
  if (problem = parse_report(text, doc); !problem.empty()) return source + " is " + problem;
  return "";
}

// The stack's name for matching: per frame, its function and source line when known, else its
// module's file name and offset. Stable across runs of one build, and across rebuilds for frames
// with line information that did not move.
std::string stack_key(const json& stack) {
  std::string key;
  for (const auto& frame : stack) {
    const std::string function = string_field(frame, "function"), file = string_field(frame, "file");
    if (!file.empty() && frame.value("line", 0) > 0) {
      key += fmt::format("{}@{}:{}", function, file, frame.value("line", 0));
    } else {
      std::string module = string_field(frame, "module");
      module = module.substr(module.rfind('/') + 1);
      key += fmt::format("{}@{}+{}", function, module, frame.value("offset", uint64_t{0}));
    }
    key += '\n';
  }
  return key;
}

// How a person names a site: its first frame with a known function (and its line).
std::string site_name(const json& stack) {
  for (const auto& frame : stack) {
    const std::string function = string_field(frame, "function");
    if (function.empty() || function == "??") continue;
    const std::string file = string_field(frame, "file");
    return file.empty() ? function : fmt::format("{} {}:{}", function, file, frame.value("line", 0));
  }
  return stack.empty() ? "(no stack)" : "??";
}

struct Figures {
  uint64_t bytes = 0, blocks = 0;
  bool present = false;
};

struct SiteChange {
  SiteChange() = default;  // NOLINT(bugprone-exception-escape): json's default constructor does not throw
  std::string key, name;
  json stack;
  Figures before, after;
  int64_t change() const { return static_cast<int64_t>(after.bytes) - static_cast<int64_t>(before.bytes); }
};

// Sites of a report, summed by key (two stacks may share a name).
void collect(const json& sites, bool after, std::map<std::string, SiteChange>& out) {
  if (!sites.is_array()) return;
  for (const auto& site : sites) {
    const json stack = site.value("stack", json::array());
    SiteChange& change = out[stack_key(stack)];
    if (change.key.empty()) {
      change.key = stack_key(stack);
      change.name = site_name(stack);
      change.stack = stack;
    }
    Figures& figures = after ? change.after : change.before;
    figures.present = true;
    figures.bytes += site.value("bytes", uint64_t{0});
    figures.blocks += site.value("blocks", uint64_t{0});
  }
}

// Whether a report lists every live site (it keeps the top ones): only then is a site missing
// from it gone, rather than too small to be listed.
bool lists_every_site(const json& doc) {
  const auto& sites = doc["live_sites"];
  return !doc.contains("live_site_count") || doc.value("live_site_count", uint64_t{0}) <= sites.size();
}

std::string status_of(const SiteChange& c, bool before_complete, bool after_complete) {
  if (!c.before.present) return before_complete ? "new" : "not listed before";
  if (!c.after.present) return after_complete ? "gone" : "not listed after";
  return c.change() > 0 ? "grew" : c.change() < 0 ? "shrank" : "same";
}

std::string signed_bytes(int64_t bytes) {
  return (bytes > 0 ? "+" : bytes < 0 ? "-" : "") + human_bytes(static_cast<uint64_t>(bytes < 0 ? -bytes : bytes));
}

std::string shown(const std::string& json_string) { return report::printable_json_text(json_string); }

json site_json(const SiteChange& c, const std::string& status) {
  json site = {{"site", c.name}, {"stack", c.stack}, {"status", status}, {"change_bytes", c.change()}};
  site["before"] = {{"bytes", c.before.bytes}, {"blocks", c.before.blocks}};
  site["after"] = {{"bytes", c.after.bytes}, {"blocks", c.after.blocks}};
  return site;
}

}  // namespace

int diff_reports(const std::string& before_source, const std::string& after_source, bool as_json, size_t sites_shown) {
  json before, after;
  for (auto [source, doc] : {std::pair{&before_source, &before}, std::pair{&after_source, &after}}) {
    if (const std::string problem = load(*source, *doc); !problem.empty()) {
      fmt::print(stderr, "heapkeeper: {}\n", shown(report::json_text(problem)));
      return 1;
    }
  }
  std::map<std::string, SiteChange> sites, leaks;
  collect(before["live_sites"], false, sites);
  collect(after["live_sites"], true, sites);
  // Leaks are matched by kind and stack.
  for (auto [doc, is_after] : {std::pair{&before, false}, std::pair{&after, true}}) {
    json keyed = json::array();
    for (const auto& leak : (*doc)["leaks"]) {
      json copy = leak;
      json stack = leak.value("stack", json::array());
      stack.insert(stack.begin(), json{{"function", leak.value("kind", "")}});
      copy["stack"] = std::move(stack);
      keyed.push_back(std::move(copy));
    }
    collect(keyed, is_after, leaks);
  }
  const bool before_complete = lists_every_site(before), after_complete = lists_every_site(after);
  std::vector<const SiteChange*> order;
  order.reserve(sites.size());
  for (const auto& entry : sites) order.push_back(&entry.second);
  std::stable_sort(order.begin(), order.end(), [](const SiteChange* a, const SiteChange* b) {
    return std::llabs(a->change()) > std::llabs(b->change());
  });
  std::vector<const SiteChange*> new_leaks, fixed_leaks, remaining_leaks;
  for (const auto& entry : leaks) {
    const SiteChange& c = entry.second;
    (c.before.present ? (c.after.present ? remaining_leaks : fixed_leaks) : new_leaks).push_back(&c);
  }
  const auto leak_json = [](const std::vector<const SiteChange*>& list, bool use_after) {
    json out = json::array();
    for (const SiteChange* c : list) {
      const Figures& f = use_after ? c->after : c->before;
      json stack = c->stack;
      const std::string kind = stack.empty() ? "" : string_field(stack[0], "function");
      if (!stack.empty()) stack.erase(stack.begin());
      out.push_back(
          {{"kind", kind}, {"site", site_name(stack)}, {"bytes", f.bytes}, {"blocks", f.blocks}, {"stack", stack}});
    }
    return out;
  };
  const auto totals = [](const json& doc) {
    return json{{"live_bytes", doc.value("live_bytes", uint64_t{0})},
                {"live_blocks", doc.value("live_blocks", uint64_t{0})},
                {"leaked_bytes", doc.value("leaked_bytes", uint64_t{0})},
                {"leaked_blocks", doc.value("leaked_blocks", uint64_t{0})}};
  };
  if (as_json) {
    json out = {{"before", totals(before)}, {"after", totals(after)}};
    json site_list = json::array();
    for (const SiteChange* c : order)
      site_list.push_back(site_json(*c, status_of(*c, before_complete, after_complete)));
    out["sites"] = std::move(site_list);
    out["leaks"] = {{"new", leak_json(new_leaks, true)},
                    {"fixed", leak_json(fixed_leaks, false)},
                    {"remaining", leak_json(remaining_leaks, true)}};
    fmt::print("{}\n", out.dump(2, ' ', false, json::error_handler_t::replace));
    return 0;
  }
  const uint64_t live_before = before.value("live_bytes", uint64_t{0}),
                 live_after = after.value("live_bytes", uint64_t{0});
  fmt::print(
      "live: {} -> {} ({}), blocks {} -> {}; leaked: {} -> {}\n", human_bytes(live_before), human_bytes(live_after),
      signed_bytes(static_cast<int64_t>(live_after) - static_cast<int64_t>(live_before)),
      before.value("live_blocks", uint64_t{0}), after.value("live_blocks", uint64_t{0}),
      human_bytes(before.value("leaked_bytes", uint64_t{0})), human_bytes(after.value("leaked_bytes", uint64_t{0})));
  fmt::print("\nSites, largest change first:\n{:>11}  {:>11}  {:>11}  {:<18}  {}\n", "BEFORE", "AFTER", "CHANGE",
             "STATUS", "SITE");
  size_t shown_sites = 0;
  for (const SiteChange* c : order) {
    if (shown_sites++ >= sites_shown) {
      fmt::print("  ... {} more sites\n", order.size() - sites_shown);
      break;
    }
    fmt::print("{:>11}  {:>11}  {:>11}  {:<18}  {}\n", c->before.present ? human_bytes(c->before.bytes) : "-",
               c->after.present ? human_bytes(c->after.bytes) : "-", signed_bytes(c->change()),
               status_of(*c, before_complete, after_complete), shown(c->name));
  }
  fmt::print("\nLeaks: {} new, {} fixed, {} remaining\n", new_leaks.size(), fixed_leaks.size(), remaining_leaks.size());
  for (auto [label, list, use_after] : {std::tuple{"new", &new_leaks, true}, std::tuple{"fixed", &fixed_leaks, false},
                                        std::tuple{"remaining", &remaining_leaks, true}}) {
    for (const json& leak : leak_json(*list, use_after)) {
      fmt::print("  {:<9}  {:<8}  {} in {} block(s)  {}\n", label, leak.value("kind", ""),
                 human_bytes(leak.value("bytes", uint64_t{0})), leak.value("blocks", uint64_t{0}),
                 shown(leak.value("site", "")));
    }
  }
  return 0;
}

}  // namespace heapkeeper::view
