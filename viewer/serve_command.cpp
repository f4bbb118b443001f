// Implementation of `heapkeeper serve` (see serve_command.h): the listen address, the routes and
// content negotiation. The HTTP itself is http_server.h's; the figures are export's
// (process_commands.h, profile_source.h, analysis/pprof_profile.h).
#include "viewer/serve_command.h"

#include <arpa/inet.h>
#include <fmt/core.h>
#include <signal.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "analysis/pprof_profile.h"
#include "stats/segment_files.h"
#include "viewer/process_commands.h"
#include "viewer/process_id.h"
#include "viewer/profile_source.h"
#include "viewer/segment_reader.h"

namespace heapkeeper::view {
namespace {

volatile std::sig_atomic_t stop_requested = 0;
void request_stop(int) { stop_requested = 1; }

constexpr const char* kRoutes = "/metrics, /debug/pprof/heap?pid=N[&leaks=1], /api/processes";
constexpr const char* kPrometheusType = "text/plain; version=0.0.4; charset=utf-8";
constexpr const char* kOpenMetricsType = "application/openmetrics-text; version=1.0.0; charset=utf-8";

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return text;
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A query's "a=1&b=2" as a map, percent-decoded; false (with one line) on a bad escape, a
// repeated name or a name not in `known`.
bool parse_query(std::string_view query, const std::vector<std::string_view>& known,
                 std::map<std::string, std::string>& out, std::string& problem) {
  auto decode = [&](std::string_view text, std::string& decoded) {
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '+') {
        decoded += ' ';
      } else if (text[i] != '%') {
        decoded += text[i];
      } else if (i + 2 < text.size() && hex_value(text[i + 1]) >= 0 && hex_value(text[i + 2]) >= 0) {
        decoded += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
        i += 2;
      } else {
        problem = "a bad %-escape in the query";
        return false;
      }
    }
    return true;
  };
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t equals = pair.find('=');
    std::string name, value;
    if (!decode(pair.substr(0, equals), name) ||
        !decode(equals == std::string_view::npos ? std::string_view() : pair.substr(equals + 1), value))
      return false;
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::string names;
      for (std::string_view k : known) names += (names.empty() ? "" : ", ") + std::string(k);
      problem = "unknown query parameter \"" + name.substr(0, 64) + "\"" +
                (known.empty() ? std::string(" (this page takes none)") : " (known: " + names + ")");
      return false;
    }
    if (!out.emplace(name, value).second) {
      problem = "query parameter " + name + " given twice";
      return false;
    }
  }
  return true;
}

HttpResponse metrics_page(const HttpRequest& request) {
  const auto accept = request.headers.find("accept");
  const bool openmetrics = accept != request.headers.end() && prefers_openmetrics(accept->second);
  std::vector<std::string> problems;  // unreadable segments: left out, as `export --all` does
  HttpResponse response;
  response.body = prometheus_text({}, true, openmetrics, problems);
  response.content_type = openmetrics ? kOpenMetricsType : kPrometheusType;
  response.headers.emplace_back("Vary", "Accept");
  return response;
}

// The running tracked processes' pids (for a pprof request that names none).
std::vector<pid_t> running_pids() {
  std::vector<pid_t> pids;
  for (const pid_t pid : SegmentReader::list_segments()) {
    SegmentReader reader;
    std::string error;
    if (reader.open(pid, false, error, 0) && reader.info().producer_alive) pids.push_back(pid);
  }
  return pids;
}

HttpResponse heap_profile_page(const std::map<std::string, std::string>& query) {
  bool leaks = false;
  if (const auto it = query.find("leaks"); it != query.end()) {
    if (it->second != "0" && it->second != "1")
      return text_response(400, "leaks must be 0 or 1, not \"" + it->second.substr(0, 64) + "\"");
    leaks = it->second == "1";
  }
  std::string pid;
  if (const auto it = query.find("pid"); it != query.end()) {
    const pid_t number = parse_process_id(it->second);
    if (number == 0) return text_response(400, "pid: " + process_id_refusal(it->second.substr(0, 64)));
    pid = std::to_string(number);  // "0123" is 123
  } else {
    const std::vector<pid_t> pids = running_pids();
    if (pids.empty()) return text_response(404, "no tracked process is running");
    if (pids.size() > 1)
      return text_response(400, fmt::format("{} tracked processes are running: name one with ?pid=N (/api/processes "
                                            "lists them)",
                                            pids.size()));
    pid = std::to_string(pids[0]);
  }
  // One profile at a time: each is a leak scan in a process (four clients must not make four at
  // once), and symbolizing goes through libdw, which is not promised to be thread-safe.
  static std::mutex one_profile_at_a_time;
  const std::lock_guard<std::mutex> lock(one_profile_at_a_time);
  // Nor may clients asking in a loop keep the process stopped: a process's profile is made again
  // only once it is older than 20 times what making it took (at least a second), so scans take at
  // most 5% of its time; until then the last one is served, its age in an Age header (RFC 9111).
  // Kept per process (the pid and its start time: a pid the kernel reused names another process,
  // and a process that ended has no profile to serve), for the kRecentProcesses asked last.
  struct RecentProfile {
    uint64_t start_ticks = 0;
    std::chrono::steady_clock::time_point made;
    std::chrono::steady_clock::duration reuse_for{};
    analysis::HeapProfile profile;
  };
  constexpr size_t kRecentProcesses = 64;
  static std::map<pid_t, RecentProfile> recent_profiles;
  const auto now = std::chrono::steady_clock::now();
  const auto pid_number = static_cast<pid_t>(std::strtol(pid.c_str(), nullptr, 10));
  const uint64_t start_ticks = stats::process_start_ticks(pid_number);
  for (auto it = recent_profiles.begin(); it != recent_profiles.end();) {
    const bool expired = now - it->second.made >= it->second.reuse_for;
    it = expired ? recent_profiles.erase(it) : std::next(it);
  }
  const auto known = recent_profiles.find(pid_number);
  const bool reuse = known != recent_profiles.end() && start_ticks != 0 && known->second.start_ticks == start_ticks;
  if (!reuse) {
    analysis::HeapProfile profile;
    ProfileFailure failure = ProfileFailure::kNone;
    if (const std::string problem = load_profile(pid, profile, &failure); !problem.empty()) {
      HttpResponse response = text_response(failure == ProfileFailure::kNoProcess ? 404
                                            : failure == ProfileFailure::kStopped ? 409
                                                                                  : 503,
                                            problem);
      if (failure == ProfileFailure::kNoAnswer) response.headers.emplace_back("Retry-After", "1");
      return response;
    }
    const auto made = std::chrono::steady_clock::now();
    if (recent_profiles.size() >= kRecentProcesses && recent_profiles.count(pid_number) == 0) {
      recent_profiles.erase(
          std::min_element(recent_profiles.begin(), recent_profiles.end(),
                           [](const auto& a, const auto& b) { return a.second.made < b.second.made; }));
    }
    recent_profiles[pid_number] = {
        start_ticks, made, std::max<std::chrono::steady_clock::duration>(std::chrono::seconds(1), (made - now) * 20),
        std::move(profile)};
  }
  const RecentProfile& recent = recent_profiles[pid_number];
  const analysis::HeapProfile& profile = recent.profile;
  if (leaks && !profile.leaks_known)
    return text_response(409, "pid " + pid + " has no leak scan, so no leaked bytes (is HEAPKEEPER_MODE off?)");
  HttpResponse response;
  response.body = analysis::pprof_file(profile, leaks);
  response.content_type = "application/octet-stream";
  response.headers.emplace_back("Content-Disposition", "attachment; filename=\"heap." + pid + ".pb.gz\"");
  if (reuse)
    response.headers.emplace_back(
        "Age", std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now - recent.made).count()));
  return response;
}

}  // namespace

bool prefers_openmetrics(std::string_view accept) {
  double openmetrics = 0, text = 0;
  while (!accept.empty()) {
    const size_t comma = accept.find(',');
    std::string_view range = accept.substr(0, comma);
    accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
    const size_t semicolon = range.find(';');
    const std::string type = lower(trim(range.substr(0, semicolon)));
    double q = 1;
    std::string version;
    for (std::string_view params = semicolon == std::string_view::npos ? "" : range.substr(semicolon + 1);
         !params.empty();) {
      const size_t next = params.find(';');
      const std::string_view param = trim(params.substr(0, next));
      params = next == std::string_view::npos ? std::string_view() : params.substr(next + 1);
      const size_t equals = param.find('=');
      if (equals == std::string_view::npos) continue;
      const std::string name = lower(trim(param.substr(0, equals)));
      const std::string value(trim(param.substr(equals + 1)));
      if (name == "q") {
        char* end = nullptr;
        q = std::strtod(value.c_str(), &end);
        if (end == value.c_str() || !(q >= 0 && q <= 1)) q = 0;  // a bad q-value counts for nothing
      } else if (name == "version") {
        version = value;
      }
    }
    // OpenMetrics 1.0.0 is what is written; Prometheus also asks for 0.0.1, the same text.
    if (type == "application/openmetrics-text" && (version.empty() || version == "1.0.0" || version == "0.0.1"))
      openmetrics = std::max(openmetrics, q);
    else if ((type == "text/plain" && (version.empty() || version == "0.0.4")) || type == "text/*" || type == "*/*")
      text = std::max(text, q);
  }
  return openmetrics > 0 && openmetrics > text;
}

bool parse_listen_address(const std::string& text, sockaddr_storage& address, socklen_t& length, bool& loopback,
                          std::string& problem) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) {
    problem = "--listen takes HOST:PORT (127.0.0.1:6060, [::1]:6060, :6060), not \"" + text + "\"";
    return false;
  }
  std::string host = text.substr(0, colon);
  const std::string port_text = text.substr(colon + 1);
  char* end = nullptr;
  const long port = std::strtol(port_text.c_str(), &end, 10);
  if (port_text.empty() || *end != '\0' || port < 0 || port > 65535 ||
      port_text.find_first_not_of("0123456789") != std::string::npos) {
    problem = "--listen: \"" + port_text + "\" is not a port (0 to 65535; 0 picks a free one)";
    return false;
  }
  address = {};
  if (host.empty() || host == "localhost") host = "127.0.0.1";
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
    if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &v6->sin6_addr) != 1) {
      problem = "--listen: " + host + " is not an IPv6 address";
      return false;
    }
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    length = sizeof(sockaddr_in6);
    const in6_addr& a = v6->sin6_addr;
    loopback = IN6_IS_ADDR_LOOPBACK(&a) || (IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127);
    return true;
  }
  auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) != 1) {
    // A host name could resolve to any address, and to another one tomorrow: what is exposed
    // beyond this machine must be named.
    problem = "--listen takes an IP address (127.0.0.1, [::1], 0.0.0.0), not the host name \"" + host + "\"";
    return false;
  }
  v4->sin_family = AF_INET;
  v4->sin_port = htons(static_cast<uint16_t>(port));
  length = sizeof(sockaddr_in);
  loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
  return true;
}

HttpResponse answer_request(const HttpRequest& request) {
  std::map<std::string, std::string> query;
  std::string problem;
  if (request.path == "/metrics") {
    if (!parse_query(request.query, {}, query, problem)) return text_response(400, problem);
    return metrics_page(request);
  }
  if (request.path == "/debug/pprof/heap") {
    if (!parse_query(request.query, {"pid", "leaks"}, query, problem)) return text_response(400, problem);
    return heap_profile_page(query);
  }
  if (request.path == "/api/processes") {
    if (!parse_query(request.query, {}, query, problem)) return text_response(400, problem);
    HttpResponse response;
    response.body = process_list_json(false);
    response.content_type = "application/json";
    return response;
  }
  if (request.path == "/") return text_response(200, std::string("heapkeeper serve: ") + kRoutes);
  std::string shown = request.path.substr(0, 128);
  return text_response(404, "no page " + shown + " (heapkeeper serve has " + kRoutes + ")");
}

int serve(const ServeOptions& options) {
  sockaddr_storage address = {};
  socklen_t length = 0;
  bool loopback = false;
  std::string problem;
  if (!parse_listen_address(options.listen, address, length, loopback, problem)) {
    fmt::print(stderr, "heapkeeper: {}\n", problem);
    return 2;
  }
  if (!(options.timeout_seconds > 0 && options.timeout_seconds <= 3600)) {
    fmt::print(stderr, "heapkeeper: --timeout takes seconds, more than 0 and at most 3600\n");
    return 2;
  }
  HttpServer server;
  if (!server.listen(address, length, problem)) {
    fmt::print(stderr, "heapkeeper: cannot listen on {}: {}\n", options.listen, problem);
    return 1;
  }
  char host[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&address)->sin6_addr, host, sizeof host);
  else
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&address)->sin_addr, host, sizeof host);
  const std::string where = address.ss_family == AF_INET6 ? fmt::format("[{}]:{}", host, server.port())
                                                          : fmt::format("{}:{}", host, server.port());
  if (!loopback)
    fmt::print(stderr,
               "heapkeeper: serving on {}, which is not a loopback address: whoever can reach it can read the "
               "heap figures and profiles (function and file names) of your tracked processes\n",
               where);
  fmt::print(stderr, "heapkeeper: serving http://{}/ ({})\n", where, kRoutes);
  std::fflush(stderr);

  struct sigaction action = {};
  action.sa_handler = request_stop;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
  HttpLimits limits;
  limits.request_timeout_ms = static_cast<int>(options.timeout_seconds * 1000);
  limits.response_timeout_ms = std::max(limits.request_timeout_ms, 60'000);
  server.run(answer_request, limits, stop_requested);
  return 0;
}

}  // namespace heapkeeper::view
