// Implementation of `heapkeeper show` (see show_command.h). Reads and checks the versioned JSON
// document (report_document.h), then prints totals, then sites largest first in LeakSanitizer's
// frame style.
#include "viewer/show_command.h"

#include "report/json_text.h"
#include "viewer/process_commands.h"
#include "viewer/report_document.h"

#include <fmt/core.h>

#include <nlohmann/json.hpp>

namespace heapkeeper::view {
namespace {

// A string of the report as the terminal shows it: the bytes json_text escaped (not UTF-8 in the
// program) as \xNN. The document passed parse_report, so a present value is a string.
std::string shown(const nlohmann::json& object, const char* key, const char* fallback) {
  if (!object.is_object() || !object.contains(key)) return fallback;
  return report::printable_json_text(object[key].get_ref<const std::string&>());
}

void print_stack(const nlohmann::json& stack, size_t frames_shown) {
  size_t index = 0;
  for (const auto& frame : stack) {
    if (index >= frames_shown) {
      fmt::print("    ... {} more frames\n", stack.size() - frames_shown);
      break;
    }
    std::string line;
    if (frame.is_object() && frame.value("language", "") == "python") {  // "#3 app.py:12 in make_list [py]"
      line = fmt::format("    #{} {}:{} in {} [py]", index, shown(frame, "file", "??"), frame.value("line", 0),
                         shown(frame, "function", "??"));
    } else {
      line = fmt::format("    #{} {} in {}+{:#x}", index, shown(frame, "function", "??"), shown(frame, "module", "??"),
                         frame.value("offset", uint64_t{0}));
      if (frame.contains("file")) line += fmt::format(" {}:{}", shown(frame, "file", ""), frame.value("line", 0));
    }
    fmt::print("{}\n", line);
    ++index;
  }
}

void print_sites(const char* title, const nlohmann::json& sites, size_t sites_shown, size_t frames_shown) {
  if (!sites.is_array() || sites.empty()) return;
  fmt::print("\n{}\n", title);
  size_t shown = 0;
  for (const auto& site : sites) {
    if (shown++ >= sites_shown) {
      fmt::print("  ... {} more sites\n", sites.size() - sites_shown);
      break;
    }
    std::string kind = site.contains("kind") ? site.value("kind", "") + " leak: " : "";
    fmt::print("  {}{} in {} block(s), allocated at:\n", kind, human_bytes(site.value("bytes", uint64_t{0})),
               site.value("blocks", uint64_t{0}));
    print_stack(site.value("stack", nlohmann::json::array()), frames_shown);
  }
}

}  // namespace

int show_report(const std::string& path, size_t sites_shown, size_t frames_shown) {
  std::string text, problem = read_report_file(path, text);
  nlohmann::json doc;
  if (problem.empty()) problem = parse_report(text, doc);
  if (!problem.empty()) {
    fmt::print(stderr, "heapkeeper: {}: {}\n", report::printable_json_text(path), problem);
    return 1;
  }
  show_report_document(doc, sites_shown, frames_shown);
  return 0;
}

void show_report_document(const nlohmann::json& doc, size_t sites_shown, size_t frames_shown) {
  // The arguments too, as list, stats and view show them: the executable alone does not say which
  // process it was when started through a link (Debian's redis-server is redis-check-rdb) or for
  // an interpreter, whose script is an argument.
  std::string arguments;
  if (doc.contains("command_line") && doc["command_line"].is_array()) {
    for (const auto& word : doc["command_line"]) {
      if (!word.is_string()) continue;
      if (!arguments.empty()) arguments += ' ';
      arguments += report::printable_json_text(word.get_ref<const std::string&>());
    }
  }
  fmt::print("heapkeeper report for pid {} ({}){}\n", doc.value("pid", 0), shown(doc, "program", "?"),
             arguments.empty() ? std::string() : "  [" + arguments + "]");
  fmt::print("  allocations {}  frees {}  live {} in {} blocks  peak {}\n", doc.value("allocations", uint64_t{0}),
             doc.value("frees", uint64_t{0}), human_bytes(doc.value("live_bytes", uint64_t{0})),
             doc.value("live_blocks", uint64_t{0}), human_bytes(doc.value("peak_live_bytes", uint64_t{0})));
  if (doc.contains("heap")) {
    const auto& heap = doc["heap"];
    fmt::print(
        "  heap: mapped {}  resident {}  returned to the OS {}\n", human_bytes(heap.value("mapped_bytes", uint64_t{0})),
        human_bytes(heap.value("resident_bytes", uint64_t{0})), human_bytes(heap.value("returned_bytes", uint64_t{0})));
  }
  if (doc.contains("leaked_blocks")) {
    fmt::print("  leaked: {} in {} blocks\n", human_bytes(doc.value("leaked_bytes", uint64_t{0})),
               doc.value("leaked_blocks", uint64_t{0}));
  }
  if (doc.contains("scan") && doc["scan"].contains("reference_counts")) {
    const auto& counts = doc["scan"]["reference_counts"];
    std::string line = "  reference counts of reachable blocks:";
    for (const char* bucket : {"1", "2", "3-4", "5-8", "9-16", "17+"}) {
      line += fmt::format(" {}:{}", bucket, counts.value(bucket, uint64_t{0}));
    }
    fmt::print("{}\n", line);
    for (const auto& block : doc["scan"].value("most_referenced", nlohmann::json::array())) {
      const auto& stack = block.value("stack", nlohmann::json::array());
      fmt::print("    {} references to a {}-byte block from {}\n", block.value("references", 0),
                 block.value("bytes", uint64_t{0}),
                 stack.empty() ? std::string("??") : shown(stack[0], "function", "??"));
    }
  }
  if (doc.value("bad_frees", uint64_t{0}) > 0)
    fmt::print("  bad frees reported: {}\n", doc.value("bad_frees", uint64_t{0}));
  print_sites("Leaks (unreachable blocks), by allocation site:", doc.value("leaks", nlohmann::json::array()),
              sites_shown, frames_shown);
  print_sites("Still allocated when the report was written, by allocation site:",
              doc.value("live_sites", nlohmann::json::array()), sites_shown, frames_shown);
}

}  // namespace heapkeeper::view
