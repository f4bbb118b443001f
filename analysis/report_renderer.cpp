// Implementation of report rendering (see report_renderer.h).
//
// JSON is built with nlohmann::json: correct by construction (escaping, numbers). Objects are
// std::map-ordered, so the text does not depend on the order keys are added in. Every string from
// the traced process goes through report::json_text (it need not be UTF-8).
#include "analysis/report_renderer.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <vector>

#include "analysis/heap_profile.h"
#include "analysis/leak_baseline.h"
#include "analysis/pprof_profile.h"
#include "collector/suppressions.h"
#include "report/json_text.h"

namespace heapkeeper::analysis {
namespace {

using report::json_text;
using report::RawReport;

const char* mode_name(uint8_t mode) {
  switch (mode) {
    case 0:
      return "off";
    case 1:
      return "detect";
    case 2:
      return "collect";
  }
  return "?";
}

// The dump's stacks named once each, by id.
class NamedStacks {
 public:
  NamedStacks(const RawReport& dump, ModuleSymbolizer& symbolizer)
      : dump_(dump), symbolizer_(symbolizer), python_(dump.python_codes) {
    for (const report::RawStack& s : dump.stacks) by_id_.emplace(s.id, &s);
  }
  const std::vector<SymbolizedFrame>& frames(uint32_t id) {
    auto [it, fresh] = named_.try_emplace(id);
    if (fresh) {
      auto stack = by_id_.find(id);
      if (stack != by_id_.end()) {
        for (const report::RawFrame& f : stack->second->frames) {
          const report::RawModule* module = f.module == report::kNoModule ? nullptr : &dump_.modules[f.module];
          it->second.push_back(symbolizer_.resolve(module, f.address, python_));
        }
      }
    }
    return it->second;
  }
  // [{function, module, offset, file, line, address, build_id, unloaded, language}]: file and line
  // when known, build_id when the module has one, unloaded (true) for a library closed since;
  // a Python frame has "language": "python", an empty module and the instruction's offset in its
  // code object's bytecode.
  nlohmann::json json(uint32_t id) {
    nlohmann::json frames_json = nlohmann::json::array();
    for (const SymbolizedFrame& f : frames(id)) {
      nlohmann::json frame = {{"address", f.address},
                              {"function", json_text(f.function)},
                              {"module", json_text(f.module)},
                              {"offset", f.module_offset}};
      if (!f.file.empty()) {
        frame["file"] = json_text(f.file);
        frame["line"] = f.line;
      }
      if (!f.build_id.empty()) frame["build_id"] = f.build_id;
      if (f.unloaded) frame["unloaded"] = true;
      if (f.python) frame["language"] = "python";
      frames_json.push_back(std::move(frame));
    }
    return frames_json;
  }

 private:
  const RawReport& dump_;
  ModuleSymbolizer& symbolizer_;
  PythonCodes python_;
  std::unordered_map<uint32_t, const report::RawStack*> by_id_;
  std::unordered_map<uint32_t, std::vector<SymbolizedFrame>> named_;
};

// Which leak groups a suppression hides: a frame's function, module or file matches a pattern.
struct SuppressedLeaks {
  std::vector<bool> suppressed;  // by group
  std::vector<report::RawAnswer::Suppressed> groups;
  uint64_t blocks = 0, bytes = 0;
  // HEAPKEEPER_BASELINE (leak_baseline.h): groups not suppressed whose site the baseline knows.
  std::vector<bool> known;  // by group
  uint64_t known_blocks = 0, known_bytes = 0;
  std::string baseline_error;  // the baseline could not be read: every leak counts
};

// Marks the unsuppressed groups whose site HEAPKEEPER_BASELINE's report lists.
void apply_baseline(const RawReport& dump, NamedStacks& stacks, SuppressedLeaks& out) {
  out.known.assign(dump.scan.groups.size(), false);
  if (dump.baseline_path.empty()) return;
  LeakBaseline baseline;
  if (!baseline.load(dump.baseline_path, out.baseline_error)) return;
  for (size_t i = 0; i < dump.scan.groups.size(); ++i) {
    const report::RawLeakGroup& g = dump.scan.groups[i];
    if (out.suppressed[i] || !baseline.knows(stacks.frames(g.stack_id))) continue;
    out.known[i] = true;
    out.known_blocks += g.blocks;
    out.known_bytes += g.bytes;
  }
}

SuppressedLeaks apply_suppressions(const RawReport& dump, NamedStacks& stacks) {
  SuppressedLeaks out;
  out.suppressed.assign(dump.scan.groups.size(), false);
  if (dump.suppressions.empty()) return out;
  collect::Suppressions suppressions;
  for (const std::string& pattern : dump.suppressions) suppressions.add(pattern);
  for (size_t i = 0; i < dump.scan.groups.size(); ++i) {
    const report::RawLeakGroup& g = dump.scan.groups[i];
    for (const SymbolizedFrame& frame : stacks.frames(g.stack_id)) {
      const std::string* pattern = suppressions.match(frame.function);
      if (pattern == nullptr) pattern = suppressions.match(frame.module);
      if (pattern == nullptr) pattern = suppressions.match(frame.file);
      if (pattern != nullptr) {
        out.suppressed[i] = true;
        out.groups.push_back({g.stack_id, *pattern});
        out.blocks += g.blocks;
        out.bytes += g.bytes;
        break;
      }
    }
  }
  return out;
}

nlohmann::json scan_json(const report::RawScan& r) {
  const double seconds = static_cast<double>(r.mark_ns) / 1e9;
  const double marked = static_cast<double>(r.root_bytes + r.heap_bytes_marked);
  return {{"number", r.number},
          {"ok", r.ok},
          {"at_exit", r.at_exit},
          {"failure", json_text(r.failure)},
          {"stop_method", r.stop_method},
          {"pause_ms", static_cast<double>(r.pause_ns) / 1e6},
          {"mark_ms", static_cast<double>(r.mark_ns) / 1e6},
          {"threads_stopped", r.threads_stopped},
          {"root_ranges", r.root_ranges},
          {"roots_scanned_bytes", r.root_bytes},
          {"heap_bytes_marked", r.heap_bytes_marked},
          {"mark_throughput_gbps", seconds > 0 ? marked / seconds / 1e9 : 0.0},
          {"live_blocks", r.live_blocks},
          {"reachable_blocks", r.reachable_blocks},
          {"leaked_blocks", r.leaked_blocks},
          {"leaked_bytes", r.leaked_bytes},
          {"new_leaked_blocks", r.new_leaked_blocks},
          {"new_leaked_bytes", r.new_leaked_bytes},
          {"reclaimed_blocks", r.reclaimed_blocks},
          {"reclaimed_bytes", r.reclaimed_bytes},
          {"held_blocks", r.held_blocks},
          {"reclaimed_blocks_total", r.reclaimed_blocks_total},
          {"reclaimed_bytes_total", r.reclaimed_bytes_total}};
}

nlohmann::json command_line(const std::string& raw) {
  nlohmann::json args = nlohmann::json::array();
  size_t start = 0;
  while (start < raw.size()) {
    size_t end = raw.find('\0', start);
    if (end == std::string::npos) end = raw.size();
    args.push_back(json_text(std::string_view(raw).substr(start, end - start)));
    start = end + 1;
  }
  return args;
}

std::string json_of(const RawReport& r, NamedStacks& stacks, const SuppressedLeaks& suppressed) {
  nlohmann::json doc;
  doc["schema_version"] = 1;
  doc["tool"] = "heapkeeper";
  doc["tool_version"] = "0.1.0";
  doc["pid"] = r.pid;
  doc["program"] = json_text(r.program);
  doc["command_line"] = command_line(r.command_line);
  doc["started_at"] = r.started_at;
  doc["written_at"] = r.written_at;
  doc["live_bytes"] = r.live_bytes;
  doc["live_blocks"] = r.live_blocks;
  doc["peak_live_bytes"] = r.peak_live_bytes;
  doc["allocations"] = r.allocations;
  doc["frees"] = r.frees;
  doc["foreign_frees"] = r.foreign_frees;
  doc["bad_frees"] = r.bad_frees;
  doc["distinct_stacks"] = r.distinct_stacks;
  doc["threads_seen"] = r.threads_seen;
  doc["heap"] = {
      {"reserved_bytes", r.heap_reserved}, {"mapped_bytes", r.heap_mapped},
      {"resident_bytes", r.heap_resident}, {"returned_bytes", r.heap_returned},
      {"active_bytes", r.heap_active},     {"internal_mapped_bytes", r.heap_internal_mapped},
  };
  doc["config"] = {
      {"stack_depth", r.stack_depth},
      {"free_stacks", r.free_stacks},
      {"mode", mode_name(r.mode)},
      {"scan_interval_ms", r.scan_interval_ms},
      {"on_bad_free", r.on_bad_free == 0 ? "abort" : "continue"},
  };
  nlohmann::json live = nlohmann::json::array();
  for (const report::RawSite& site : r.live_sites)
    live.push_back({{"blocks", site.blocks}, {"bytes", site.bytes}, {"stack", stacks.json(site.stack_id)}});
  doc["live_sites"] = std::move(live);
  doc["live_site_count"] = r.live_site_count;
  const report::RawScan& s = r.scan;
  if (s.present) {
    uint64_t blocks = 0, bytes = 0;
    nlohmann::json leaks = nlohmann::json::array();
    for (size_t i = 0; i < s.groups.size(); ++i) {
      if (suppressed.suppressed[i]) continue;
      const report::RawLeakGroup& g = s.groups[i];
      blocks += g.blocks;
      bytes += g.bytes;
      nlohmann::json leak = {{"kind", report::leak_kind_name(g.kind)},
                             {"blocks", g.blocks},
                             {"bytes", g.bytes},
                             {"new_blocks", g.new_blocks},
                             {"age_scans", g.age_scans},
                             {"stack", stacks.json(g.stack_id)}};
      if (!r.baseline_path.empty()) leak["in_baseline"] = static_cast<bool>(suppressed.known[i]);
      leaks.push_back(std::move(leak));
    }
    doc["leaked_blocks"] = blocks;
    doc["leaked_bytes"] = bytes;
    doc["leaks"] = std::move(leaks);
    doc["suppressed_leaks"] = {{"blocks", suppressed.blocks}, {"bytes", suppressed.bytes}};
    if (!r.baseline_path.empty()) {
      nlohmann::json baseline = {{"path", json_text(r.baseline_path)},
                                 {"ok", suppressed.baseline_error.empty()},
                                 {"known_blocks", suppressed.known_blocks},
                                 {"known_bytes", suppressed.known_bytes},
                                 {"new_blocks", blocks - suppressed.known_blocks},
                                 {"new_bytes", bytes - suppressed.known_bytes}};
      if (!suppressed.baseline_error.empty()) baseline["error"] = json_text(suppressed.baseline_error);
      doc["baseline"] = std::move(baseline);
    }
    doc["scan"] = scan_json(s);
    const char* bucket_names[] = {"1", "2", "3-4", "5-8", "9-16", "17+"};
    nlohmann::json histogram;
    for (int i = 0; i < 6; ++i) histogram[bucket_names[i]] = s.reference_histogram[i];
    doc["scan"]["reference_counts"] = std::move(histogram);
    nlohmann::json top = nlohmann::json::array();
    for (const report::RawReferenced& b : s.most_referenced)
      top.push_back({{"references", b.references}, {"bytes", b.size}, {"stack", stacks.json(b.stack_id)}});
    doc["scan"]["most_referenced"] = std::move(top);
    // What blocks and allocation sites retain; "known": false when the scan recorded no
    // reference graph (HEAPKEEPER_RETAINED=0, the text-only exit scan, no memory).
    nlohmann::json retained = {{"known", s.retained_known}};
    if (s.retained_known) {
      retained["analysis_ms"] = static_cast<double>(s.retained_analysis_ns) / 1e6;
      retained["references"] = s.references_recorded;
      nlohmann::json sites = nlohmann::json::array();
      for (const report::RawScan::RetainedSite& site : s.retained_sites) {
        sites.push_back({{"blocks", site.blocks},
                         {"bytes", site.bytes},
                         {"retained_bytes", site.retained_bytes},
                         {"stack", stacks.json(site.stack_id)}});
      }
      retained["sites"] = std::move(sites);
      nlohmann::json blocks = nlohmann::json::array();
      for (const report::RawScan::RetainedBlock& block : s.top_retainers) {
        char address[32];
        std::snprintf(address, sizeof(address), "0x%lx", static_cast<unsigned long>(block.address));
        blocks.push_back({{"address", address},
                          {"bytes", block.size},
                          {"retained_bytes", block.retained_bytes},
                          {"stack", stacks.json(block.stack_id)}});
      }
      retained["top_blocks"] = std::move(blocks);
    }
    doc["scan"]["retained"] = std::move(retained);
    doc["scans"] = s.scans;
    doc["collected"] = {{"blocks", s.collected_blocks}, {"bytes", s.collected_bytes}};
  }
  // Every string above went through json_text; should invalid UTF-8 ever slip through, it is
  // replaced (U+FFFD) rather than thrown.
  return doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

// The LeakSanitizer-style report of the leaks no suppression hides; empty when there are none.
std::string leak_text(const RawReport& r, NamedStacks& stacks, const SuppressedLeaks& suppressed) {
  const report::RawScan& s = r.scan;
  uint64_t blocks = 0, bytes = 0;
  for (size_t i = 0; i < s.groups.size(); ++i) {
    if (suppressed.suppressed[i]) continue;
    blocks += s.groups[i].blocks;
    bytes += s.groups[i].bytes;
  }
  if (blocks == 0) return {};
  std::string text = "\n=================================================================\n";
  text += "==" + std::to_string(r.pid) + "==ERROR: heapkeeper: detected memory leaks\n";
  for (size_t i = 0; i < s.groups.size(); ++i) {
    if (suppressed.suppressed[i]) continue;
    const report::RawLeakGroup& g = s.groups[i];
    text += "\n" + std::string(suppressed.known[i] ? "[known] " : "") + report::leak_kind_title(g.kind) + " leak of " +
            std::to_string(g.bytes) + " byte(s) in " + std::to_string(g.blocks) + " object(s) allocated from:\n";
    const std::vector<SymbolizedFrame>& frames = stacks.frames(g.stack_id);
    for (size_t k = 0; k < frames.size(); ++k) {
      char prefix[48];
      if (frames[k].python)  // no address to show: "#3 app.py:12 in make_list [py]"
        std::snprintf(prefix, sizeof(prefix), "    #%zu ", k);
      else
        std::snprintf(prefix, sizeof(prefix), "    #%zu 0x%lx in ", k, static_cast<unsigned long>(frames[k].address));
      text += prefix + ModuleSymbolizer::format(frames[k]) + "\n";
    }
    if (frames.empty()) text += "    (no stack recorded)\n";
  }
  if (suppressed.blocks > 0) {
    text += "\nSuppressed: " + std::to_string(suppressed.bytes) + " byte(s) in " + std::to_string(suppressed.blocks) +
            " object(s).\n";
  }
  if (!suppressed.baseline_error.empty()) {
    text += "\nBaseline: " + suppressed.baseline_error + "; every leak counts as new.\n";
  } else if (!r.baseline_path.empty()) {
    text += "\nBaseline: " + std::to_string(suppressed.known_bytes) + " byte(s) in " +
            std::to_string(suppressed.known_blocks) + " object(s) leaked at sites the baseline " + r.baseline_path +
            " lists (marked [known] above); " + std::to_string(bytes - suppressed.known_bytes) + " byte(s) in " +
            std::to_string(blocks - suppressed.known_blocks) + " object(s) are new.\n";
  }
  text += "\nSUMMARY: heapkeeper: " + std::to_string(bytes) + " byte(s) leaked in " + std::to_string(blocks) +
          " allocation(s).\n";
  return text;
}

}  // namespace

report::RawAnswer render_answer(const RawReport& dump, ModuleSymbolizer& symbolizer) {
  NamedStacks stacks(dump, symbolizer);
  SuppressedLeaks suppressed = apply_suppressions(dump, stacks);
  apply_baseline(dump, stacks, suppressed);
  report::RawAnswer answer;
  // What HEAPKEEPER_EXITCODE counts: leaks neither suppressed nor at a site of the baseline.
  for (size_t i = 0; i < dump.scan.groups.size(); ++i)
    answer.unsuppressed_leaks |= !suppressed.suppressed[i] && !suppressed.known[i];
  answer.suppressed = suppressed.groups;
  if (dump.flags & report::kWantLeakText) answer.leak_text = leak_text(dump, stacks, suppressed);
  if ((dump.flags & report::kWantFrames) && !dump.stacks.empty()) {
    for (const SymbolizedFrame& frame : stacks.frames(dump.stacks[0].id))
      answer.leak_text += ModuleSymbolizer::format(frame) + "\n";
  }
  if (dump.flags & report::kWantJson) answer.json = json_of(dump, stacks, suppressed);
  if (dump.flags & report::kWantProfile) answer.profile = pprof_file(profile_of_dump(dump, symbolizer));
  return answer;
}

std::string render_json(const RawReport& dump, ModuleSymbolizer& symbolizer) {
  NamedStacks stacks(dump, symbolizer);
  SuppressedLeaks suppressed = apply_suppressions(dump, stacks);
  apply_baseline(dump, stacks, suppressed);
  return json_of(dump, stacks, suppressed);
}

}  // namespace heapkeeper::analysis
