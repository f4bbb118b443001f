// Implementation of the process's `why` answer (see why_answer.h).
#include "collector/why_answer.h"

#include <cerrno>
#include <unordered_map>
#include <unordered_set>

#include "allocator/stack_table.h"
#include "allocator/unloaded_modules.h"
#include "collector/holding_frame.h"
#include "collector/retainers.h"
#include "report/module_map.h"
#include "report/python_codes.h"
#include "report/raw_why.h"

namespace heapkeeper::collect {
namespace {

// Return addresses sent per stack root: the first names the holding frame; the others show
// what lies below it, should a stale one have come first.
constexpr size_t kHolderFrames = 4;

// {"error": "<message>"}: the messages here are fixed ASCII text, or the scan's own (ASCII).
std::string error_answer(const std::string& message, int& status, int code) {
  status = code;
  std::string text = "{\"error\": \"";
  for (char c : message) {
    if (c == '"' || c == '\\') text += '\\';
    text += static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
  }
  return text + "\"}";
}

// Whether a frame of the stack lies in one of the ranges (a return address points just past its
// call: the call is one byte back). Frames of libraries unloaded since the stack was captured
// meant other code than what those addresses hold now, and never match. Cached per stack id.
class RangeMatcher {
 public:
  explicit RangeMatcher(const std::vector<std::pair<uint64_t, uint64_t>>& ranges) : ranges_(ranges) {}
  bool operator()(uint32_t stack_id) {
    if (auto found = cache_.find(stack_id); found != cache_.end()) return found->second;
    bool match = false;
    const alloc::StackView view = alloc::stack_table().frames(stack_id);
    for (uint32_t i = 0; i < view.depth && !match; ++i) {
      const uint64_t call = view.frames[i] - 1;
      for (const auto& [low, high] : ranges_) {
        alloc::UnloadedModule unloaded;
        if (call >= low && call < high && !alloc::unloaded_module_for(view.frames[i], view.generation, &unloaded)) {
          match = true;
          break;
        }
      }
    }
    cache_.emplace(stack_id, match);
    return match;
  }

 private:
  const std::vector<std::pair<uint64_t, uint64_t>>& ranges_;
  std::unordered_map<uint32_t, bool> cache_;
};

report::RawWhyRoot raw_root(const RetainerPath& path, report::ModuleMap& modules, report::RawWhy& why) {
  report::RawWhyRoot root;
  const RootRange& r = path.root;
  root.kind = r.start == 0 && r.end == 0 ? report::RawRootKind::kUnknown : static_cast<report::RawRootKind>(r.kind);
  root.word = path.root_word;
  root.range_start = r.start;
  root.range_end = r.end;
  root.thread = r.thread;
  root.stack_pointer = r.stack_pointer;
  if (r.kind == RootKind::kModuleData) root.module = modules.attribute_data(path.root_word, why.modules);
  if (r.kind == RootKind::kStack && r.stack_pointer != 0) {
    // Frames being executed now: named by what is mapped now (the current module generation).
    const uint32_t generation = alloc::module_generation();
    for (uint64_t address : return_addresses_below(path.root_word, r.stack_pointer, modules, kHolderFrames))
      root.holder_frames.push_back({address, modules.attribute(address, generation, why.modules)});
  }
  return root;
}

// The stacks the chains name, each frame attributed to its module.
void add_stacks(report::RawWhy& why, report::ModuleMap& modules) {
  std::unordered_set<uint32_t> added;
  for (const report::RawWhyPath& path : why.paths) {
    for (const report::RawWhyStep& step : path.chain) {
      if (!added.insert(step.stack_id).second) continue;
      const alloc::StackView view = alloc::stack_table().frames(step.stack_id);
      report::RawStack stack;
      stack.id = step.stack_id;
      for (uint32_t i = 0; i < view.depth; ++i)
        stack.frames.push_back({view.frames[i], modules.attribute(view.frames[i], view.generation, why.modules)});
      why.stacks.push_back(std::move(stack));
    }
  }
  report::add_python_codes(why.stacks, why.python_codes);
}

}  // namespace

std::string build_why_answer(const std::string& argument, int& status) {
  report::WhyRequest request;
  std::string problem;
  if (!report::parse_why_request(argument, request, problem)) return error_answer(problem, status, EINVAL);
  WhyTarget target;
  target.address = request.address;
  RangeMatcher matcher(request.ranges);
  if (!request.ranges.empty()) target.site = [&](uint32_t stack_id) { return matcher(stack_id); };
  // One allocation site: the stacks a report groups with it (the same frames in the same modules).
  const uint64_t site_key = request.stack_id != 0 ? alloc::stack_table().site_key(request.stack_id) : 0;
  std::unordered_map<uint32_t, bool> same_site;  // by stack id: hashing a stack per block would cost
  if (request.stack_id != 0) {
    target.site = [&](uint32_t stack_id) {
      auto [it, fresh] = same_site.try_emplace(stack_id, false);
      if (fresh) it->second = alloc::stack_table().site_key(stack_id) == site_key;
      return it->second;
    };
  }
  const WhyAnswer answer = why_now(target, request.paths);
  if (!answer.ok) return error_answer(answer.failure, status, EAGAIN);
  report::RawWhy why;
  why.stop_method = answer.stop_method;
  if (answer.target_blocks == 0) {
    why.outcome = target.site                 ? report::RawWhyOutcome::kNoSiteBlock
                  : answer.target_unreachable ? report::RawWhyOutcome::kLeaked
                                              : report::RawWhyOutcome::kNoLiveBlock;
  }
  why.blocks = answer.target_blocks;
  why.bytes = answer.target_bytes;
  why.retained_bytes = answer.retained_bytes;
  report::ModuleMap modules;
  modules.load();
  for (const RetainerPath& path : answer.paths) {
    report::RawWhyPath raw;
    raw.root = raw_root(path, modules, why);
    for (const RetainerStep& step : path.chain) raw.chain.push_back({step.address, step.size, step.stack_id});
    why.paths.push_back(std::move(raw));
  }
  add_stacks(why, modules);
  status = 0;
  return report::serialize_raw_why(why);
}

}  // namespace heapkeeper::collect
