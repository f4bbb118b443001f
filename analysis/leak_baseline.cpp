// Implementation of HEAPKEEPER_BASELINE's matching (see leak_baseline.h).
#include "analysis/leak_baseline.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

namespace heapkeeper::analysis {
namespace {

constexpr size_t kMaxBaselineBytes = size_t{256} << 20;

std::string frame_key(const std::string& function, const std::string& module) {
  if (!function.empty() && function != "??") return function;
  return "??@" + module.substr(module.rfind('/') + 1);
}

}  // namespace

std::string LeakBaseline::key_of(const std::vector<SymbolizedFrame>& stack) {
  std::string key;
  for (const SymbolizedFrame& frame : stack) key += frame_key(frame.function, frame.module) + '\n';
  return key;
}

bool LeakBaseline::load(const std::string& path, std::string& error) {
  keys_.clear();
  // Non-blocking, then a regular file only: the path may name a FIFO nobody writes.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    error = "cannot read the baseline " + path + ": " + std::strerror(errno);
    return false;
  }
  struct stat status {};
  if (::fstat(fd, &status) != 0 || !S_ISREG(status.st_mode) ||
      static_cast<size_t>(status.st_size) > kMaxBaselineBytes) {
    ::close(fd);
    error = "the baseline " + path + " is not a regular file of at most 256 MiB";
    return false;
  }
  std::string text(static_cast<size_t>(status.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  text.resize(got);
  const nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
  // Every type checked before it is used: json::value() throws when "tool" is there but is no
  // string, and the exception ended the whole report (no JSON report, frames unnamed).
  const auto tool = doc.is_object() ? doc.find("tool") : doc.end();
  const auto leaks = doc.is_object() ? doc.find("leaks") : doc.end();
  if (doc.is_discarded() || !doc.is_object() || tool == doc.end() || !tool->is_string() ||
      tool->get_ref<const std::string&>() != "heapkeeper" || leaks == doc.end() || !leaks->is_array()) {
    error = "the baseline " + path + " is not a heapkeeper JSON report (HEAPKEEPER_REPORT) with a \"leaks\" list";
    return false;
  }
  for (const nlohmann::json& leak : *leaks) {
    const auto stack = leak.is_object() ? leak.find("stack") : leak.end();
    if (stack == leak.end() || !stack->is_array()) continue;
    std::string key;
    for (const nlohmann::json& frame : *stack) {
      if (!frame.is_object()) continue;
      const auto text_of = [&](const char* name) {
        const auto found = frame.find(name);
        return found != frame.end() && found->is_string() ? found->get<std::string>() : std::string();
      };
      key += frame_key(text_of("function"), text_of("module")) + '\n';
    }
    keys_.insert(std::move(key));
  }
  return true;
}

bool LeakBaseline::knows(const std::vector<SymbolizedFrame>& stack) const { return keys_.count(key_of(stack)) != 0; }

}  // namespace heapkeeper::analysis
