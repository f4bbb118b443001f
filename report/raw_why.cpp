// Writing and reading `why`'s request and raw answer (see raw_why.h).
#include "report/raw_why.h"

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_set>

#include "report/raw_encoding.h"

namespace heapkeeper::report {
namespace {

constexpr size_t kHeaderBytes = 8 + 4 + 4 + 8;
constexpr uint32_t kMaxRanges = 4096;

}  // namespace

const RawStack* RawWhy::stack(uint32_t id) const {
  for (const RawStack& s : stacks) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

std::string serialize_raw_why(const RawWhy& why) {
  RawWriter w;
  w.u64(kRawWhyMagic);
  w.u32(kRawWhyVersion);
  w.u32(static_cast<uint32_t>(why.outcome));
  w.u64(0);  // total size, filled in last
  w.u64(why.blocks);
  w.u64(why.bytes);
  w.u64(why.retained_bytes);
  w.bytes(why.stop_method);
  w.u32(static_cast<uint32_t>(why.paths.size()));
  for (const RawWhyPath& path : why.paths) {
    const RawWhyRoot& r = path.root;
    w.u8(static_cast<uint8_t>(r.kind));
    w.u64(r.word);
    w.u64(r.range_start);
    w.u64(r.range_end);
    w.i32(r.thread);
    w.u64(r.stack_pointer);
    w.u32(r.module);
    w.u32(static_cast<uint32_t>(r.holder_frames.size()));
    for (const RawFrame& f : r.holder_frames) {
      w.u64(f.address);
      w.u32(f.module);
    }
    w.u32(static_cast<uint32_t>(path.chain.size()));
    for (const RawWhyStep& step : path.chain) {
      w.u64(step.address);
      w.u64(step.size);
      w.u32(step.stack_id);
    }
  }
  write_modules(w, why.modules);
  write_stacks(w, why.stacks);
  write_python_codes(w, why.python_codes);
  std::string& out = w.text();
  const uint64_t total = out.size();
  std::memcpy(out.data() + 16, &total, sizeof total);
  return std::move(out);
}

bool parse_raw_why(std::string_view bytes, RawWhy& why, std::string& error) {
  why = RawWhy{};
  if (bytes.size() < kHeaderBytes) {
    error = "an answer shorter than its header (" + std::to_string(bytes.size()) + " bytes)";
    return false;
  }
  RawCursor c(bytes);
  if (c.u64("header") != kRawWhyMagic) {
    error = "an answer that is not heapkeeper's (wrong magic number)";
    return false;
  }
  if (const uint32_t version = c.u32("header"); version != kRawWhyVersion) {
    error = "an answer of version " + std::to_string(version) + " (this heapkeeper reads " +
            std::to_string(kRawWhyVersion) + ")";
    return false;
  }
  const uint32_t outcome = c.u32("header");
  if (outcome > static_cast<uint32_t>(RawWhyOutcome::kNoLiveBlock)) c.fail("unknown outcome");
  why.outcome = static_cast<RawWhyOutcome>(outcome);
  if (c.u64("header") != bytes.size()) c.fail("the size in its header is not its size");
  why.blocks = c.u64("target");
  why.bytes = c.u64("target");
  why.retained_bytes = c.u64("target");
  why.stop_method = c.bytes("stop method", 64);
  const uint32_t path_count = c.count("paths", size_t{4} * 8);
  if (c.ok() && path_count > kRawWhyMaxPaths) c.fail("more paths than asked for");
  std::vector<uint32_t> module_references;
  for (uint32_t i = 0; i < path_count && c.ok(); ++i) {
    RawWhyPath path;
    RawWhyRoot& r = path.root;
    const uint8_t kind = c.u8("root");
    if (c.ok() && kind > static_cast<uint8_t>(RawRootKind::kBootstrap)) c.fail("unknown root kind");
    r.kind = static_cast<RawRootKind>(kind);
    r.word = c.u64("root");
    r.range_start = c.u64("root");
    r.range_end = c.u64("root");
    r.thread = c.number<int32_t>("root");
    r.stack_pointer = c.u64("root");
    r.module = c.u32("root");
    module_references.push_back(r.module);
    const uint32_t frames = c.count("holder frames", 12);
    if (c.ok() && frames > kRawDumpMaxDepth) c.fail("too many holder frames");
    for (uint32_t k = 0; k < frames && c.ok(); ++k) {
      RawFrame f;
      f.address = c.u64("holder frame");
      f.module = c.u32("holder frame");
      module_references.push_back(f.module);
      r.holder_frames.push_back(f);
    }
    const uint32_t steps = c.count("chain", 20);
    for (uint32_t k = 0; k < steps && c.ok(); ++k) {
      RawWhyStep step;
      step.address = c.u64("chain");
      step.size = c.u64("chain");
      step.stack_id = c.u32("chain");
      path.chain.push_back(step);
    }
    why.paths.push_back(std::move(path));
  }
  read_modules(c, why.modules);
  std::unordered_set<uint32_t> ids;
  read_stacks(c, why.modules.size(), why.stacks, ids);
  read_python_codes(c, why.python_codes);
  if (c.ok() && c.left() != 0) c.fail(std::to_string(c.left()) + " bytes after the python section");
  for (uint32_t module : module_references)
    if (c.ok() && module != kNoModule && module >= why.modules.size()) c.fail("a root names a module not in the map");
  for (const RawWhyPath& path : why.paths)
    for (const RawWhyStep& step : path.chain)
      if (c.ok() && ids.count(step.stack_id) == 0)
        c.fail("a block names stack " + std::to_string(step.stack_id) + ", absent");
  if (!c.ok()) {
    error = "a malformed answer: " + c.error();
    return false;
  }
  return true;
}

std::string serialize_why_request(const WhyRequest& request) {
  std::string text = std::to_string(request.paths) + "\n";
  char line[64];
  if (request.stack_id != 0) return text + "stack " + std::to_string(request.stack_id);
  if (request.ranges.empty()) {
    std::snprintf(line, sizeof line, "address %" PRIx64, request.address);
    return text + line;
  }
  text += "ranges";
  for (const auto& [low, high] : request.ranges) {
    std::snprintf(line, sizeof line, "\n%" PRIx64 " %" PRIx64, low, high);
    text += line;
  }
  return text;
}

bool parse_why_request(std::string_view text, WhyRequest& request, std::string& error) {
  request = WhyRequest{};
  const std::string copy(text);  // terminated, for strtoull
  const char* at = copy.c_str();
  char* end = nullptr;
  const auto number = [&](int base, uint64_t& out) {
    while (*at == ' ') ++at;
    if (*at == '\0' || *at == '\n') return false;
    errno = 0;
    out = std::strtoull(at, &end, base);
    if (end == at || errno == ERANGE) return false;
    at = end;
    return true;
  };
  uint64_t paths = 0;
  if (!number(10, paths) || paths < 1 || paths > kRawWhyMaxPaths || *at != '\n') {
    error = "a request without its number of paths (1 to " + std::to_string(kRawWhyMaxPaths) + ")";
    return false;
  }
  request.paths = paths;
  ++at;
  if (std::strncmp(at, "address ", 8) == 0) {
    at += 8;
    if (!number(16, request.address) || *at != '\0' || request.address == 0) {
      error = "a request with a bad address";
      return false;
    }
    return true;
  }
  if (std::strncmp(at, "stack ", 6) == 0) {
    at += 6;
    uint64_t id = 0;
    if (!number(10, id) || *at != '\0' || id == 0 || id > UINT32_MAX) {
      error = "a request with a bad stack id";
      return false;
    }
    request.stack_id = static_cast<uint32_t>(id);
    return true;
  }
  if (std::strncmp(at, "ranges", 6) != 0) {
    error = "a request for neither an address nor address ranges";
    return false;
  }
  at += 6;
  while (*at == '\n') {
    ++at;
    uint64_t low = 0, high = 0;
    if (!number(16, low) || !number(16, high) || low >= high || (*at != '\n' && *at != '\0') ||
        request.ranges.size() >= kMaxRanges) {
      error = "a request with a bad address range";
      return false;
    }
    request.ranges.emplace_back(low, high);
  }
  if (*at != '\0' || request.ranges.empty()) {
    error = "a request with a bad address range";
    return false;
  }
  return true;
}

}  // namespace heapkeeper::report
