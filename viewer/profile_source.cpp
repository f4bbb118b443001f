// Loading a heap profile from a process or a report file (see profile_source.h).
#include "viewer/profile_source.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

#include "report/json_text.h"
#include "viewer/process_id.h"
#include "viewer/report_document.h"
#include "viewer/segment_reader.h"

namespace heapkeeper::view {
namespace {

using nlohmann::json;

// A string of the report as the bytes it stands for (report/json_text.h: argv, paths and symbols
// need not be UTF-8), as a raw dump would give it.
std::string decoded_text_of(const json& object, const char* key) {
  const auto found = object.find(key);
  return found != object.end() && found->is_string() ? report::decode_json_text(found->get_ref<const std::string&>())
                                                     : std::string();
}
uint64_t count_of(const json& object, const char* key) {
  const auto found = object.find(key);
  return found != object.end() && found->is_number_unsigned() ? found->get<uint64_t>() : 0;
}

// A report's frames as profile frames, modules made from what the frames say: path and build-id,
// load bias = address - offset, and as range what the frames span.
class ReportFrames {
 public:
  explicit ReportFrames(analysis::HeapProfile& profile) : profile_(profile) {}

  uint32_t stack(const json& owner) {
    std::vector<analysis::ProfileFrame> frames;
    if (const auto stack = owner.find("stack"); stack != owner.end() && stack->is_array()) {
      for (const json& entry : *stack) {
        if (!entry.is_object()) continue;
        analysis::ProfileFrame frame;
        frame.address = count_of(entry, "address");
        frame.module_offset = count_of(entry, "offset");
        frame.function = decoded_text_of(entry, "function");
        if (frame.function == "??") frame.function.clear();
        frame.file = decoded_text_of(entry, "file");
        frame.line = static_cast<int>(std::min<uint64_t>(count_of(entry, "line"), INT32_MAX));
        frame.python = decoded_text_of(entry, "language") == "python";
        const std::string module = decoded_text_of(entry, "module");
        if (!module.empty() && module != "??")
          frame.module = this->module(module, decoded_text_of(entry, "build_id"), frame);
        frames.push_back(std::move(frame));
      }
    }
    profile_.stacks.push_back(std::move(frames));
    return static_cast<uint32_t>(profile_.stacks.size() - 1);
  }

 private:
  int32_t module(const std::string& path, const std::string& build_id, const analysis::ProfileFrame& frame) {
    auto [it, fresh] = modules_.try_emplace({path, build_id}, static_cast<int32_t>(profile_.modules.size()));
    if (fresh) profile_.modules.push_back({path, build_id, UINT64_MAX, 0, 0});
    analysis::ProfileModule& module = profile_.modules[static_cast<size_t>(it->second)];
    // A module's lowest mapping holds its ELF header, at its load bias (0 for a fixed-address
    // executable, whose lowest address frames do not tell: there the lowest frame's page).
    const uint64_t bias = frame.address >= frame.module_offset ? frame.address - frame.module_offset : 0;
    const uint64_t start = bias != 0 ? bias : frame.address & ~uint64_t{0xfff};
    module.start = std::min(module.start, start);
    module.file_offset = bias != 0 ? 0 : module.start;
    module.limit = std::max(module.limit, frame.address + 1);
    return it->second;
  }

  analysis::HeapProfile& profile_;
  std::map<std::pair<std::string, std::string>, int32_t> modules_;
};

analysis::HeapProfile profile_of_report(const json& doc) {
  analysis::HeapProfile profile;
  if (const auto pid = doc.find("pid"); pid != doc.end() && pid->is_number_integer()) profile.pid = pid->get<int32_t>();
  profile.program = decoded_text_of(doc, "program");
  if (const auto at = doc.find("written_at"); at != doc.end() && at->is_number_integer())
    profile.written_at = at->get<int64_t>();
  profile.live_bytes = count_of(doc, "live_bytes");
  profile.live_blocks = count_of(doc, "live_blocks");
  ReportFrames frames(profile);
  if (const auto sites = doc.find("live_sites"); sites != doc.end() && sites->is_array())
    for (const json& site : *sites)
      profile.samples.push_back(
          {frames.stack(site), analysis::SampleKind::kLive, count_of(site, "blocks"), count_of(site, "bytes")});
  const auto scan = doc.find("scan");
  profile.leaks_known = scan != doc.end() && scan->is_object() && scan->value("ok", false) && doc.contains("leaks");
  if (profile.leaks_known && doc["leaks"].is_array()) {
    for (const json& leak : doc["leaks"]) {
      const std::string kind_name = decoded_text_of(leak, "kind");
      const auto kind = kind_name == "indirect" ? analysis::SampleKind::kIndirectLeak
                        : kind_name == "cycle"  ? analysis::SampleKind::kCycleLeak
                                                : analysis::SampleKind::kDirectLeak;
      profile.samples.push_back({frames.stack(leak), kind, count_of(leak, "blocks"), count_of(leak, "bytes")});
    }
  }
  analysis::add_unlisted_sites(profile);
  return profile;
}

}  // namespace

std::string load_profile(const std::string& source, analysis::HeapProfile& profile, ProfileFailure* failure) {
  ProfileFailure ignored = ProfileFailure::kNone;
  ProfileFailure& why = failure != nullptr ? *failure : ignored;
  why = ProfileFailure::kNone;
  if (names_a_process(source)) {
    const pid_t pid = parse_process_id(source);
    if (pid == 0) {
      why = ProfileFailure::kNoProcess;
      return process_id_refusal(source);
    }
    SegmentReader reader;
    std::string problem;
    if (!reader.open(pid, true, problem)) {
      why = ProfileFailure::kNoProcess;
      return problem;
    }
    if (reader.info().stopped()) {
      why = ProfileFailure::kStopped;
      return "pid " + source + " is stopped (continue it with kill -CONT " + source + ")";
    }
    report::RawReport dump;
    if (!reader.profile_dump(60000, dump, problem)) {
      why = ProfileFailure::kNoAnswer;
      return "report of pid " + source + ": " + problem;
    }
    analysis::ModuleSymbolizer symbolizer;
    profile = analysis::profile_of_dump(dump, symbolizer);
    return "";
  }
  why = ProfileFailure::kBadFile;
  std::string text;
  if (std::string problem = read_report_file(source, text); !problem.empty()) return source + ": " + problem;
  json doc;
  if (std::string problem = parse_report(text, doc); !problem.empty()) return source + " is " + problem;
  why = ProfileFailure::kNone;
  profile = profile_of_report(doc);
  return "";
}

}  // namespace heapkeeper::view
