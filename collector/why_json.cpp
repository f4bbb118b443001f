// Implementation of the `why` answer (see why_json.h).
#include "collector/why_json.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "allocator/stack_table.h"
#include "collector/retainers.h"
#include "report/json_text.h"
#include "report/read_file.h"
#include "report/symbolizer.h"

namespace heapkeeper::collect {
namespace {

// Interim, until `why` answers with raw facts named by the binary as reports now are (issue 12's
// split): `why` names its frames and globals here, with the in-process symbolizer, which loads
// libdw into the process the first time someone asks `why` (never otherwise).
report::Symbolizer& symbolizer() {
  static auto* instance = new report::Symbolizer();  // never destroyed: exit handlers may still run
  return *instance;
}

constexpr size_t kMaxPaths = 16;

std::string hex(uintptr_t value) {
  char text[32];
  std::snprintf(text, sizeof(text), "0x%lx", static_cast<unsigned long>(value));
  return text;
}

std::string thread_name(int32_t tid) {
  std::string comm = report::read_whole_file(("/proc/thread-self/../" + std::to_string(tid) + "/comm").c_str());
  while (!comm.empty() && (comm.back() == '\n' || comm.back() == '\0')) comm.pop_back();
  return comm.empty() ? "thread " + std::to_string(tid) : "thread " + std::to_string(tid) + " (" + comm + ")";
}

// Register names in PTRACE_GETREGSET's order (struct user_regs_struct), the stop method's order
// when the world was stopped with ptrace; with signals they are the ucontext's, numbered.
const char* const kUserRegisters[] = {"r15",    "r14", "r13", "r12",     "rbp",     "rbx", "r11",      "r10", "r9",
                                      "r8",     "rax", "rcx", "rdx",     "rsi",     "rdi", "orig_rax", "rip", "cs",
                                      "eflags", "rsp", "ss",  "fs_base", "gs_base", "ds",  "es",       "fs",  "gs"};

nlohmann::json root_json(const RetainerPath& path, const std::string& stop_method) {
  const RootRange& r = path.root;
  const uintptr_t word = path.root_word;
  switch (r.kind) {
    case RootKind::kModuleData: {
      // resolve() looks up the address before a return address; one past the word names it.
      const report::SymbolizedFrame f = symbolizer().resolve(word + 1);
      return {{"kind", "global"},
              {"name", report::json_text(f.function)},
              {"module", report::json_text(f.module)},
              {"offset", f.module_offset}};
    }
    case RootKind::kStack:
      return {{"kind", "stack"},
              {"name", report::json_text(thread_name(r.thread))},
              {"module", ""},
              {"offset", word >= r.stack_pointer ? word - r.stack_pointer : 0}};
    case RootKind::kRegisters: {
      const size_t index = (word - r.start) / 8;
      std::string name = thread_name(r.thread) + " register ";
      if (stop_method == "ptrace" && index < sizeof(kUserRegisters) / sizeof(kUserRegisters[0]))
        name += kUserRegisters[index];
      else
        name += "#" + std::to_string(index);
      return {{"kind", "register"}, {"name", report::json_text(name)}, {"module", ""}, {"offset", index}};
    }
    case RootKind::kKernel:
      return {{"kind", "kernel"},
              {"name", "a pointer handed to the kernel (epoll, timer or AIO)"},
              {"module", ""},
              {"offset", 0}};
    case RootKind::kBootstrap:
      return {{"kind", "bootstrap"}, {"name", "allocated before heapkeeper's heap"}, {"module", ""}, {"offset", 0}};
    case RootKind::kAnonymous:
      break;
  }
  return {{"kind", "anonymous"},
          {"name", r.start != 0 ? "mapping " + hex(r.start) + "-" + hex(r.end) : "memory at " + hex(word)},
          {"module", ""},
          {"offset", r.start != 0 ? word - r.start : 0}};
}

// The allocation site of a stack: its first frame, named.
nlohmann::json site_json(uint32_t stack_id, std::unordered_map<uint32_t, nlohmann::json>& cache) {
  if (auto found = cache.find(stack_id); found != cache.end()) return found->second;
  nlohmann::json site = {{"function", "??"}, {"file", ""}, {"line", 0}};
  const alloc::StackView view = alloc::stack_table().frames(stack_id);
  if (view.depth > 0) {
    const report::SymbolizedFrame f = symbolizer().resolve(view.frames[0], view.generation);
    site = {{"function", report::json_text(f.function)}, {"file", report::json_text(f.file)}, {"line", f.line}};
  }
  cache.emplace(stack_id, site);
  return site;
}

// Whether any frame of the stack is `function`; cached per stack id.
bool stack_has_function(uint32_t stack_id, const std::string& function, std::unordered_map<uint32_t, bool>& cache) {
  if (auto found = cache.find(stack_id); found != cache.end()) return found->second;
  bool match = false;
  const alloc::StackView view = alloc::stack_table().frames(stack_id);
  for (uint32_t i = 0; i < view.depth && !match; ++i)
    match = symbolizer().resolve(view.frames[i], view.generation).function == function;
  cache.emplace(stack_id, match);
  return match;
}

std::string error(const std::string& message, int& status, int code) {
  status = code;
  return nlohmann::json({{"error", report::json_text(message)}}).dump();
}

}  // namespace

std::string build_why_json(const std::string& argument, int& status) {
  const size_t newline = argument.find('\n');
  const std::string target_text = argument.substr(0, newline);
  size_t paths = 3;
  if (newline != std::string::npos) {
    char* end = nullptr;
    const unsigned long n = std::strtoul(argument.c_str() + newline + 1, &end, 10);
    if (n >= 1 && n <= kMaxPaths) paths = n;
  }
  if (target_text.empty()) return error("no target: give a block address (0x...) or a function name", status, EINVAL);
  WhyTarget target;
  nlohmann::json target_json;
  std::unordered_map<uint32_t, bool> matches;  // outlives the scan: the site predicate fills it
  if (target_text.rfind("0x", 0) == 0) {
    char* end = nullptr;
    errno = 0;
    target.address = std::strtoull(target_text.c_str() + 2, &end, 16);
    if (end == nullptr || *end != '\0' || target.address == 0 || errno == ERANGE)
      return error("'" + target_text + "' is not an address", status, EINVAL);
    target_json["address"] = hex(target.address);
  } else {
    target.site = [&](uint32_t stack_id) { return stack_has_function(stack_id, target_text, matches); };
    target_json["function"] = report::json_text(target_text);
  }
  const WhyAnswer answer = why_now(target, paths);
  if (!answer.ok) return error(answer.failure, status, EAGAIN);
  if (answer.target_blocks == 0) {
    if (target.site) return error("no reachable block was allocated under " + target_text, status, ENOENT);
    if (answer.target_unreachable)
      return error(hex(target.address) + " is in a block nothing reachable holds: it is leaked (heapkeeper report)",
                   status, ENOENT);
    return error(hex(target.address) + " is in no live block", status, ENOENT);
  }
  target_json["blocks"] = answer.target_blocks;
  target_json["bytes"] = answer.target_bytes;
  target_json["retained_bytes"] = answer.retained_bytes;
  std::unordered_map<uint32_t, nlohmann::json> sites;
  nlohmann::json path_list = nlohmann::json::array();
  for (const RetainerPath& path : answer.paths) {
    nlohmann::json chain = nlohmann::json::array();
    for (const RetainerStep& step : path.chain)
      chain.push_back({{"address", hex(step.address)}, {"size", step.size}, {"site", site_json(step.stack_id, sites)}});
    path_list.push_back({{"root", root_json(path, answer.stop_method)}, {"chain", std::move(chain)}});
  }
  status = 0;
  return nlohmann::json({{"target", std::move(target_json)}, {"paths", std::move(path_list)}}).dump();
}

}  // namespace heapkeeper::collect
