// Implementation of `why`'s rendering (see why_renderer.h).
#include "analysis/why_renderer.h"

#include <cstdio>
#include <unordered_map>

#include "allocator/python_frame_word.h"
#include "report/json_text.h"
#include "report/read_file.h"
#include "report/register_words.h"

namespace heapkeeper::analysis {
namespace {

std::string hex(uint64_t value) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(value));
  return text;
}

std::string thread_name(pid_t pid, int32_t tid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/comm";
  std::string comm = report::read_whole_file(path.c_str());
  while (!comm.empty() && (comm.back() == '\n' || comm.back() == '\0')) comm.pop_back();
  const std::string thread = "thread " + std::to_string(tid);
  return comm.empty() ? thread : thread + " (" + comm + ")";
}

// Register names in PTRACE_GETREGSET's order (struct user_regs_struct), the stop method's order
// when the world was stopped with ptrace; with signals they are the ucontext's, numbered.
const char* const kUserRegisters[] = {"r15",    "r14", "r13", "r12",     "rbp",     "rbx", "r11",      "r10", "r9",
                                      "r8",     "rax", "rcx", "rdx",     "rsi",     "rdi", "orig_rax", "rip", "cs",
                                      "eflags", "rsp", "ss",  "fs_base", "gs_base", "ds",  "es",       "fs",  "gs"};

// A vector register's name from its word in the register root (report/register_words.h), the
// same under both stop methods; empty for a general register. A pointer in bits 128..255 is in
// ymmN and zmmN, not in xmmN: the narrowest register that holds it names it.
std::string vector_register_name(uint64_t index) {
  const auto within = [index](uint32_t at, uint32_t words) { return index >= at && index < at + words; };
  if (within(report::kXmmAt, report::kXmmWords)) return "xmm" + std::to_string((index - report::kXmmAt) / 2);
  if (within(report::kX87At, report::kX87Words)) return "st" + std::to_string((index - report::kX87At) / 2);
  if (within(report::kYmmHighAt, report::kYmmHighWords))
    return "ymm" + std::to_string((index - report::kYmmHighAt) / 2);
  if (within(report::kZmmHighAt, report::kZmmHighWords))
    return "zmm" + std::to_string((index - report::kZmmHighAt) / 4);
  if (within(report::kHighZmmAt, report::kHighZmmWords))
    return "zmm" + std::to_string(16 + (index - report::kHighZmmAt) / 8);
  if (within(report::kOpmaskAt, report::kOpmaskWords)) return "k" + std::to_string(index - report::kOpmaskAt);
  return "";
}

const report::RawModule* module_at(const report::RawWhy& why, uint32_t index) {
  return index < why.modules.size() ? &why.modules[index] : nullptr;
}

nlohmann::json root_json(const report::RawWhy& why, const report::RawWhyRoot& r, pid_t pid,
                         ModuleSymbolizer& symbolizer) {
  using Kind = report::RawRootKind;
  switch (r.kind) {
    case Kind::kGlobal: {
      // resolve() looks up the byte before a return address; one past the word names the word.
      const report::RawModule* module = module_at(why, r.module);
      const SymbolizedFrame f = symbolizer.resolve(module, r.word + 1);
      return {{"kind", "global"},
              {"name", report::json_text(f.function)},
              {"module", report::json_text(f.module)},
              {"offset", module != nullptr ? r.word - module->load_bias : 0}};
    }
    case Kind::kStack: {
      nlohmann::json root = {
          {"kind", "stack"},    {"name", report::json_text(thread_name(pid, r.thread))},
          {"thread", r.thread}, {"function", "??"},
          {"module", ""},       {"offset", r.word >= r.stack_pointer ? r.word - r.stack_pointer : 0}};
      if (!r.holder_frames.empty()) {
        const report::RawFrame& frame = r.holder_frames.front();
        const SymbolizedFrame f = symbolizer.resolve(module_at(why, frame.module), frame.address);
        root["function"] = report::json_text(f.function);
        root["module"] = report::json_text(f.module);
      }
      return root;
    }
    case Kind::kRegisters: {
      const uint64_t index = (r.word - r.range_start) / 8;
      std::string name = thread_name(pid, r.thread) + " register ";
      const std::string vector = vector_register_name(index);
      if (why.stop_method == "ptrace" && index < std::size(kUserRegisters))
        name += kUserRegisters[index];
      else if (!vector.empty())
        name += vector;
      else
        name += "#" + std::to_string(index);
      return {{"kind", "register"},
              {"name", report::json_text(name)},
              {"thread", r.thread},
              {"module", ""},
              {"offset", index}};
    }
    case Kind::kKernel:
      return {{"kind", "kernel"},
              {"name", "a pointer handed to the kernel (epoll, timer or AIO)"},
              {"module", ""},
              {"offset", 0}};
    case Kind::kBootstrap:
      return {{"kind", "bootstrap"}, {"name", "allocated before heapkeeper's heap"}, {"module", ""}, {"offset", 0}};
    case Kind::kAnonymous:
    case Kind::kUnknown:
      break;
  }
  const bool known = r.kind == Kind::kAnonymous && r.range_start != 0;
  return {{"kind", "anonymous"},
          {"name", known ? "mapping " + hex(r.range_start) + "-" + hex(r.range_end) : "memory at " + hex(r.word)},
          {"module", ""},
          {"offset", known ? r.word - r.range_start : 0}};
}

// The allocation site of a stack: its first frame, named.
nlohmann::json site_json(const report::RawWhy& why, uint32_t stack_id, ModuleSymbolizer& symbolizer,
                         std::unordered_map<uint32_t, nlohmann::json>& cache) {
  if (auto found = cache.find(stack_id); found != cache.end()) return found->second;
  nlohmann::json site = {{"function", "??"}, {"file", ""}, {"line", 0}};
  const report::RawStack* stack = why.stack(stack_id);
  if (stack != nullptr && !stack->frames.empty()) {
    const report::RawFrame& frame = stack->frames.front();
    const SymbolizedFrame f = symbolizer.resolve(module_at(why, frame.module), frame.address);
    site = {{"function", report::json_text(f.function)}, {"file", report::json_text(f.file)}, {"line", f.line}};
    // Under Python the first frame is the interpreter's allocator: the innermost Python frame says
    // which line of the program made the block.
    const PythonCodes python(why.python_codes);
    for (const report::RawFrame& outer : stack->frames) {
      if (!python_word::is_python(outer.address) || python.empty()) continue;
      site["python"] = report::json_text(ModuleSymbolizer::format(symbolizer.resolve(nullptr, outer.address, python)));
      break;
    }
  }
  cache.emplace(stack_id, site);
  return site;
}

}  // namespace

nlohmann::json render_why_json(const report::RawWhy& why, nlohmann::json target, pid_t pid,
                               ModuleSymbolizer& symbolizer) {
  target["blocks"] = why.blocks;
  target["bytes"] = why.bytes;
  target["retained_bytes"] = why.retained_bytes;
  std::unordered_map<uint32_t, nlohmann::json> sites;
  nlohmann::json paths = nlohmann::json::array();
  for (const report::RawWhyPath& path : why.paths) {
    nlohmann::json chain = nlohmann::json::array();
    for (const report::RawWhyStep& step : path.chain) {
      chain.push_back({{"address", hex(step.address)},
                       {"size", step.size},
                       {"site", site_json(why, step.stack_id, symbolizer, sites)}});
    }
    paths.push_back({{"root", root_json(why, path.root, pid, symbolizer)}, {"chain", std::move(chain)}});
  }
  return {{"target", std::move(target)}, {"paths", std::move(paths)}};
}

}  // namespace heapkeeper::analysis
