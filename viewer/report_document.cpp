// Implementation of reading and checking a report document (see report_document.h).
#include "viewer/report_document.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "report/read_file.h"

namespace heapkeeper::view {
namespace {

using nlohmann::json;

// The first key whose value has the wrong type, as "live_sites[0].bytes is not a whole number".
// Absent keys are fine: `show` prints what a report has, and older reports lack newer keys.
class SchemaCheck {
 public:
  const std::string& problem() const { return problem_; }

  void text(const json& object, const char* key, const std::string& at) {
    if (present(object, key) && !object[key].is_string()) fail(at + key, "a string");
  }
  void integer(const json& object, const char* key, const std::string& at) {
    if (present(object, key) && !object[key].is_number_integer()) fail(at + key, "a whole number");
  }
  void count(const json& object, const char* key, const std::string& at) {
    if (present(object, key) && !object[key].is_number_unsigned()) fail(at + key, "a whole number, 0 or more");
  }
  // An object-valued key; nullptr when absent or (then failed) not an object.
  const json* object(const json& parent, const char* key, const std::string& at) {
    if (!present(parent, key)) return nullptr;
    if (!parent[key].is_object()) {
      fail(at + key, "an object");
      return nullptr;
    }
    return &parent[key];
  }
  // Each element of an array-valued key, checked by `element(value, "key[i]")`.
  template <typename Element>
  void array(const json& parent, const char* key, const std::string& at, Element element) {
    if (!present(parent, key)) return;
    if (!parent[key].is_array()) return fail(at + key, "an array");
    size_t index = 0;
    for (const json& value : parent[key]) {
      const std::string here = at + key + "[" + std::to_string(index++) + "]";
      if (!value.is_object()) return fail(here, "an object");
      element(value, here + ".");
      if (!problem_.empty()) return;
    }
  }

  void stack(const json& owner, const std::string& at) {
    array(owner, "stack", at, [this](const json& frame, const std::string& here) {
      for (const char* key : {"function", "module", "file", "language"}) text(frame, key, here);
      for (const char* key : {"offset", "line"}) count(frame, key, here);
    });
  }
  void sites(const json& document, const char* key) {
    array(document, key, "", [this](const json& site, const std::string& here) {
      text(site, "kind", here);
      for (const char* number : {"bytes", "blocks"}) count(site, number, here);
      stack(site, here);
    });
  }

 private:
  bool present(const json& object, const char* key) const { return problem_.empty() && object.contains(key); }
  void fail(const std::string& at, const char* expected) {
    if (problem_.empty()) problem_ = at + " is not " + expected;
  }

  std::string problem_;
};

std::string check_schema(const json& document) {
  SchemaCheck check;
  check.integer(document, "pid", "");
  check.text(document, "program", "");
  for (const char* key : {"allocations", "frees", "live_bytes", "live_blocks", "peak_live_bytes", "leaked_blocks",
                          "leaked_bytes", "bad_frees"})
    check.count(document, key, "");
  if (const json* heap = check.object(document, "heap", ""))
    for (const char* key : {"mapped_bytes", "resident_bytes", "returned_bytes"}) check.count(*heap, key, "heap.");
  if (const json* scan = check.object(document, "scan", "")) {
    if (const json* counts = check.object(*scan, "reference_counts", "scan."))
      for (const auto& [bucket, value] : counts->items())
        check.count(*counts, bucket.c_str(), "scan.reference_counts.");
    check.array(*scan, "most_referenced", "scan.", [&check](const json& block, const std::string& here) {
      for (const char* key : {"references", "bytes"}) check.count(block, key, here);
      check.stack(block, here);
    });
  }
  check.sites(document, "leaks");
  check.sites(document, "live_sites");
  return check.problem();
}

}  // namespace

std::string read_report_file(const std::string& path, std::string& text) {
  text.clear();
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return std::strerror(errno);
  const std::string too_large =
      "is larger than " + std::to_string(kMaxReportBytes >> 20) + " MiB, more than any report";
  std::string problem;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    problem = std::strerror(errno);
  } else if (S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode)) {
    problem = std::string("is ") + report::file_kind(st.st_mode) + ", not a report file";
  } else if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) > kMaxReportBytes) {
    problem = too_large;
  }
  if (problem.empty()) problem = report::read_at_most(fd, kMaxReportBytes, too_large, text);
  close(fd);
  if (problem.empty() && text.empty()) problem = "is empty, not a report";
  if (!problem.empty()) text.clear();
  return problem;
}

std::string parse_report(const std::string& text, nlohmann::json& document) {
  // Reports nest five deep (document, leaks, site, stack, frame). Deeper input is refused as it
  // is read: ten million '[' would otherwise take seconds and hundreds of MiB to build and free.
  struct TooDeep {};
  constexpr int kMaxDepth = 32;
  const json::parser_callback_t limit_depth = [](int depth, json::parse_event_t, json&) {
    if (depth > kMaxDepth) throw TooDeep{};
    return true;
  };
  try {
    document = json::parse(text, limit_depth);
  } catch (const json::parse_error& error) {
    return "not a heapkeeper report: not valid JSON (error at byte " + std::to_string(error.byte) + ")";
  } catch (const json::out_of_range&) {
    // A number beyond a double's range (1e400): nlohmann's out_of_range.406, which names no
    // position, and whose text (the number itself, of any length) is the file's, not ours.
    return "not a heapkeeper report: a number too large for a double";
  } catch (const TooDeep&) {
    return "not a heapkeeper report: nested more than " + std::to_string(kMaxDepth) + " deep";
  }
  if (!document.is_object()) return "not a heapkeeper report: not a JSON object";
  const auto tool = document.find("tool");
  if (tool == document.end() || !tool->is_string() || tool->get_ref<const std::string&>() != "heapkeeper")
    return "not a heapkeeper report: no \"tool\": \"heapkeeper\"";
  const std::string problem = check_schema(document);
  return problem.empty() ? problem : "not a heapkeeper report: " + problem;
}

}  // namespace heapkeeper::view
