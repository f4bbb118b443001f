// Implementation of `heapkeeper export` and `heapkeeper flamegraph` (see profile_commands.h).
#include "viewer/profile_commands.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "analysis/heap_profile.h"
#include "analysis/pprof_profile.h"
#include "viewer/flamegraph_svg.h"
#include "viewer/process_commands.h"
#include "viewer/process_id.h"
#include "viewer/profile_source.h"

namespace heapkeeper::view {
namespace {

// Writes `bytes` to `path` (empty or "-": standard output). A binary format is not written to a
// terminal. False after one line saying why not.
bool write_output(const std::string& path, const std::string& bytes, bool binary, const char* what) {
  const bool to_stdout = path.empty() || path == "-";
  if (to_stdout && binary && isatty(STDOUT_FILENO)) {
    fmt::print(stderr, "heapkeeper: {} is binary: write it to a file with -o FILE\n", what);
    return false;
  }
  const int fd = to_stdout ? STDOUT_FILENO : open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    fmt::print(stderr, "heapkeeper: cannot write {}: {}\n", path, std::strerror(errno));
    return false;
  }
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  const int error = errno;
  const bool closed = to_stdout || close(fd) == 0;
  if (done < bytes.size() || !closed) {
    fmt::print(stderr, "heapkeeper: cannot write {}: {}\n", to_stdout ? std::string("standard output") : path,
               std::strerror(done < bytes.size() ? error : errno));
    return false;
  }
  return true;
}

// The profile of `source`, or false after one line.
bool load(const std::string& source, analysis::HeapProfile& profile) {
  if (const std::string problem = load_profile(source, profile); !problem.empty()) {
    fmt::print(stderr, "heapkeeper: {}\n", problem);
    return false;
  }
  return true;
}

// Leaked bytes need a leak scan; a report without one (HEAPKEEPER_MODE=off) cannot say.
bool leaks_available(const analysis::HeapProfile& profile, const std::string& source) {
  if (profile.leaks_known) return true;
  fmt::print(stderr, "heapkeeper: {} has no leak scan, so no leaked bytes (was HEAPKEEPER_MODE off?)\n", source);
  return false;
}

}  // namespace

int export_figures(const ExportRequest& request) {
  if (request.format == "openmetrics" || request.format == "prometheus") {
    if (!request.all && request.sources.empty()) {
      fmt::print(stderr, "heapkeeper: export needs PIDs or --all\n");
      return 2;
    }
    std::vector<pid_t> pids;
    for (const std::string& source : request.sources) {
      if (!names_a_process(source)) {
        fmt::print(
            stderr,
            "heapkeeper: export: {} is not a pid (Prometheus and OpenMetrics figures come from running processes)\n",
            source);
        return 2;
      }
      const pid_t pid = parse_process_id(source);
      if (pid == 0) {
        fmt::print(stderr, "heapkeeper: export: {}\n", process_id_refusal(source));
        return 2;
      }
      pids.push_back(pid);
    }
    return export_prometheus(pids, request.all, request.format == "openmetrics");
  }
  if (request.format != "pprof" && request.format != "collapsed") {
    fmt::print(stderr, "heapkeeper: export: unknown format {} (prometheus, openmetrics, pprof or collapsed)\n",
               request.format);
    return 2;
  }
  if (request.all || request.sources.size() != 1) {
    fmt::print(stderr, "heapkeeper: export --format {} takes one PID or REPORT.json\n", request.format);
    return 2;
  }
  analysis::HeapProfile profile;
  if (!load(request.sources[0], profile)) return 1;
  if (request.format == "pprof") {
    // The profile holds both; --leaks makes leaked_space what pprof shows without -sample_index.
    if (request.leaks && !leaks_available(profile, request.sources[0])) return 1;
    return write_output(request.output, analysis::pprof_file(profile, request.leaks), true, "a pprof profile") ? 0 : 1;
  }
  if (request.leaks && !leaks_available(profile, request.sources[0])) return 1;
  const std::string text = analysis::folded_text(analysis::folded_stacks(profile, request.leaks));
  return write_output(request.output, text, false, "collapsed stacks") ? 0 : 1;
}

int draw_flamegraph(const std::string& source, const std::string& output, bool leaks) {
  analysis::HeapProfile profile;
  if (!load(source, profile)) return 1;
  if (leaks && !leaks_available(profile, source)) return 1;
  const std::vector<analysis::FoldedStack> stacks = analysis::folded_stacks(profile, leaks);
  if (stacks.empty())
    fmt::print(stderr, "heapkeeper: {} has no {} memory to draw\n", source, leaks ? "leaked" : "live");
  const std::string title = fmt::format("{} of {} (pid {})", leaks ? "Leaked memory" : "Live heap",
                                        profile.program.empty() ? "?" : profile.program, profile.pid);
  return write_output(output, flamegraph_svg(stacks, title, leaks), false, "an SVG flame graph") ? 0 : 1;
}

}  // namespace heapkeeper::view
