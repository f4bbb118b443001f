// Building a HeapProfile from a raw dump (see heap_profile.h).
#include "analysis/heap_profile.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <unordered_map>

#include "analysis/hex_text.h"
#include "collector/suppressions.h"

namespace heapkeeper::analysis {
namespace {

// The dump's stacks, each named once and given its index in the profile.
class StackIndex {
 public:
  StackIndex(const report::RawReport& dump, ModuleSymbolizer& symbolizer, HeapProfile& profile)
      : dump_(dump), symbolizer_(symbolizer), profile_(profile), python_(dump.python_codes) {}

  uint32_t index(uint32_t stack_id) {
    auto [it, fresh] = index_.try_emplace(stack_id, static_cast<uint32_t>(profile_.stacks.size()));
    if (!fresh) return it->second;
    std::vector<ProfileFrame> frames;
    if (const report::RawStack* stack = dump_.stack(stack_id)) {
      for (const report::RawFrame& raw : stack->frames) {
        const bool in_module = raw.module != report::kNoModule;
        const SymbolizedFrame named =
            symbolizer_.resolve(in_module ? &dump_.modules[raw.module] : nullptr, raw.address, python_);
        ProfileFrame frame;
        frame.address = raw.address;
        frame.module = in_module ? static_cast<int32_t>(raw.module) : -1;
        frame.module_offset = named.module_offset;
        if (named.function != "??") frame.function = named.function;
        frame.file = named.file;
        frame.line = named.line;
        frame.python = named.python;
        frames.push_back(std::move(frame));
      }
    }
    profile_.stacks.push_back(std::move(frames));
    return it->second;
  }

 private:
  const report::RawReport& dump_;
  ModuleSymbolizer& symbolizer_;
  HeapProfile& profile_;
  PythonCodes python_;
  std::unordered_map<uint32_t, uint32_t> index_;
};

// Whether a suppression pattern matches a frame of the stack: the rule the JSON report and the
// leak text apply (analysis/report_renderer.cpp), so a profile counts the same leaks they show.
bool suppressed(const collect::Suppressions& suppressions, const std::vector<ProfileFrame>& frames,
                const HeapProfile& profile) {
  for (const ProfileFrame& frame : frames) {
    const std::string module = frame.module >= 0 ? profile.modules[static_cast<size_t>(frame.module)].path : "";
    if (suppressions.match(frame.function) || suppressions.match(module) || suppressions.match(frame.file)) return true;
  }
  return false;
}

}  // namespace

HeapProfile profile_of_dump(const report::RawReport& dump, ModuleSymbolizer& symbolizer) {
  HeapProfile profile;
  profile.pid = dump.pid;
  profile.program = dump.program;
  profile.written_at = dump.written_at;
  profile.live_bytes = dump.live_bytes;
  profile.live_blocks = dump.live_blocks;
  for (const report::RawModule& raw : dump.modules) {
    ProfileModule module;
    module.path = raw.path;
    module.build_id = hex_text(raw.build_id);
    module.start = raw.low;
    module.limit = raw.high;
    // The file offset `low` maps, as /proc/PID/maps gives it and pprof expects: its address in the
    // ELF file's numbering (low - load bias), which equals its file offset for a relocatable object
    // (PIE, shared library: the first PT_LOAD at offset 0, or the mapping's own offset). A
    // fixed-address executable (bias 0) numbers from 0x400000, and its first PT_LOAD is at offset 0.
    module.file_offset = raw.load_bias != 0 && raw.low >= raw.load_bias ? raw.low - raw.load_bias : 0;
    profile.modules.push_back(std::move(module));
  }
  StackIndex stacks(dump, symbolizer, profile);
  if (dump.flags & report::kWantProfile) {
    std::unordered_map<uint32_t, int32_t> thread_index;  // heapkeeper's thread number -> profile.threads
    for (const report::RawThread& thread : dump.threads) {
      thread_index.emplace(thread.thread, static_cast<int32_t>(profile.threads.size()));
      profile.threads.push_back({thread.tid, thread.name});
    }
    for (const report::RawThreadSite& site : dump.thread_sites) {
      const auto thread = thread_index.find(site.thread);
      profile.samples.push_back({stacks.index(site.stack_id), SampleKind::kLive, site.blocks, site.bytes,
                                 thread != thread_index.end() ? thread->second : -1});
    }
  } else {
    for (const report::RawSite& site : dump.live_sites)
      profile.samples.push_back({stacks.index(site.stack_id), SampleKind::kLive, site.blocks, site.bytes});
  }
  const report::RawScan& scan = dump.scan;
  profile.leaks_known = scan.present && scan.ok;
  if (profile.leaks_known) {
    collect::Suppressions suppressions;
    for (const std::string& pattern : dump.suppressions) suppressions.add(pattern);
    for (const report::RawLeakGroup& group : scan.groups) {
      const uint32_t stack = stacks.index(group.stack_id);
      if (!dump.suppressions.empty() && suppressed(suppressions, profile.stacks[stack], profile)) continue;
      profile.samples.push_back({stack, leak_sample_kind(group.kind), group.blocks, group.bytes});
    }
  }
  add_unlisted_sites(profile);
  return profile;
}

void add_unlisted_sites(HeapProfile& profile) {
  uint64_t listed_bytes = 0, listed_blocks = 0;
  for (const ProfileSample& sample : profile.samples) {
    if (sample.kind != SampleKind::kLive) continue;
    listed_bytes += sample.bytes;
    listed_blocks += sample.blocks;
  }
  // Sites are counted while the program runs on: a live process's listed sites may add up to a
  // little more than its totals a moment earlier. Nothing is left over then.
  if (profile.live_bytes <= listed_bytes) return;
  ProfileFrame frame;
  frame.function = "[other allocation sites]";
  profile.stacks.push_back({frame});
  profile.samples.push_back({static_cast<uint32_t>(profile.stacks.size() - 1), SampleKind::kLive,
                             profile.live_blocks > listed_blocks ? profile.live_blocks - listed_blocks : 0,
                             profile.live_bytes - listed_bytes});
}

std::vector<FoldedStack> folded_stacks(const HeapProfile& profile, bool leaks) {
  std::map<std::vector<std::string>, uint64_t> bytes_by_stack;
  for (const ProfileSample& sample : profile.samples) {
    if ((sample.kind != SampleKind::kLive) != leaks || sample.bytes == 0) continue;
    std::vector<std::string> names;
    const std::vector<ProfileFrame>& frames = profile.stacks[sample.stack];
    for (auto frame = frames.rbegin(); frame != frames.rend(); ++frame) names.push_back(frame_name(profile, *frame));
    if (names.empty()) names.push_back("[no stack recorded]");
    bytes_by_stack[std::move(names)] += sample.bytes;
  }
  std::vector<FoldedStack> stacks;
  stacks.reserve(bytes_by_stack.size());
  for (const auto& [names, bytes] : bytes_by_stack) stacks.push_back({names, bytes});
  std::stable_sort(stacks.begin(), stacks.end(),
                   [](const FoldedStack& a, const FoldedStack& b) { return a.bytes > b.bytes; });
  return stacks;
}

std::string folded_text(const std::vector<FoldedStack>& stacks) {
  std::string text;
  for (const FoldedStack& stack : stacks) {
    for (size_t i = 0; i < stack.frames.size(); ++i) {
      if (i > 0) text += ';';
      text += stack.frames[i];
    }
    text += ' ' + std::to_string(stack.bytes) + '\n';
  }
  return text;
}

std::string frame_name(const HeapProfile& profile, const ProfileFrame& frame) {
  std::string name;
  if (frame.python) {  // "app.py:12 in make_list [py]": a function's lines are boxes of their own
    name = (frame.file.empty() ? "??" : frame.file) + (frame.line > 0 ? ":" + std::to_string(frame.line) : "") +
           " in " + (frame.function.empty() ? "??" : frame.function) + " [py]";
  } else if (!frame.function.empty()) {
    name = frame.function;
  } else if (frame.module >= 0) {
    const std::string& path = profile.modules[static_cast<size_t>(frame.module)].path;
    char offset[24];
    std::snprintf(offset, sizeof offset, "+0x%" PRIx64, frame.module_offset);
    name = path.substr(path.rfind('/') + 1) + offset;
  } else {
    char address[24];
    std::snprintf(address, sizeof address, "0x%" PRIx64, frame.address);
    name = address;
  }
  // Folded stacks separate frames with ';' and samples with line breaks.
  for (char& c : name)
    if (c == ';' || c == '\n' || c == '\r') c = ':';
  return name;
}

SampleKind leak_sample_kind(report::LeakKind kind) {
  return kind == report::LeakKind::kDirect  ? SampleKind::kDirectLeak
         : kind == report::LeakKind::kCycle ? SampleKind::kCycleLeak
                                            : SampleKind::kIndirectLeak;
}

const char* leak_kind_label(SampleKind kind) {
  switch (kind) {
    case SampleKind::kDirectLeak:
      return report::leak_kind_name(report::LeakKind::kDirect);
    case SampleKind::kIndirectLeak:
      return report::leak_kind_name(report::LeakKind::kIndirect);
    case SampleKind::kCycleLeak:
      return report::leak_kind_name(report::LeakKind::kCycle);
    case SampleKind::kLive:
      break;
  }
  return "";
}

}  // namespace heapkeeper::analysis
