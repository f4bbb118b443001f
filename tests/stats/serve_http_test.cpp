// `heapkeeper serve`'s pure parts: the request parser (every refusal has its status), content
// negotiation between Prometheus's text format and OpenMetrics (with the Accept headers real
// scrapers send), the listen address (loopback or not; host names refused) and the routes' answers
// to bad requests. The server end to end, with Prometheus and go tool pprof, is
// tests/integration/serve.sh.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>

#include "viewer/http_message.h"
#include "viewer/http_server.h"
#include "viewer/serve_command.h"

namespace heapkeeper::view {
namespace {

int parse(const std::string& head, HttpRequest& request) {
  std::string problem;
  const int status = parse_http_request(head, HttpLimits{}.max_target_bytes, request, problem);
  if (status != 0) {
    EXPECT_FALSE(problem.empty()) << head;
    EXPECT_EQ(problem.find('\n'), std::string::npos) << problem;
  }
  return status;
}

TEST(HttpRequestParser, ReadsMethodPathQueryAndHeaders) {
  HttpRequest request;
  ASSERT_EQ(
      parse("GET /debug/pprof/heap?pid=12&leaks=1 HTTP/1.1\r\nHost: x\r\nAccept:  a/b \r\naccept: c\r\n\r\n", request),
      0);
  EXPECT_EQ(request.method, "GET");
  EXPECT_EQ(request.path, "/debug/pprof/heap");
  EXPECT_EQ(request.query, "pid=12&leaks=1");
  EXPECT_EQ(request.headers["accept"], "a/b, c");
  EXPECT_EQ(request.headers["host"], "x");
  HttpRequest bare;
  ASSERT_EQ(parse("HEAD /metrics HTTP/1.0\n\n", bare), 0);  // bare line feeds, HTTP/1.0
  EXPECT_EQ(bare.method, "HEAD");
  EXPECT_EQ(bare.query, "");
  HttpRequest absolute;
  ASSERT_EQ(parse("GET http://host:1/metrics?x HTTP/1.1\r\n\r\n", absolute), 0);
  EXPECT_EQ(absolute.path, "/metrics");
}

TEST(HttpRequestParser, RefusesWithTheRightStatus) {
  HttpRequest request;
  EXPECT_EQ(parse("POST /metrics HTTP/1.1\r\n\r\n", request), 405);
  EXPECT_EQ(parse("GET /metrics HTTP/2.0\r\n\r\n", request), 505);
  EXPECT_EQ(parse("GET /metrics SPDY\r\n\r\n", request), 400);
  EXPECT_EQ(parse("GET /metrics\r\n\r\n", request), 400);
  EXPECT_EQ(parse("GET  /metrics HTTP/1.1\r\n\r\n", request), 400);
  EXPECT_EQ(parse("GET metrics HTTP/1.1\r\n\r\n", request), 400);
  EXPECT_EQ(parse("G\x01T /metrics HTTP/1.1\r\n\r\n", request), 400);
  EXPECT_EQ(parse("GET /" + std::string(5000, 'a') + " HTTP/1.1\r\n\r\n", request), 414);
  EXPECT_EQ(parse("GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", request), 400);
  EXPECT_EQ(parse("GET /metrics HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", request), 400);
  EXPECT_EQ(parse("GET /metrics HTTP/1.1\r\nBad Name: b\r\n\r\n", request), 400);
  EXPECT_EQ(parse("\r\n\r\n", request), 400);
  EXPECT_EQ(parse(std::string("GET /m\0x HTTP/1.1\r\n\r\n", 22), request), 400);
}

// A head of `bytes` bytes, its blank line included.
std::string head_of(size_t bytes) {
  const std::string start = "GET /metrics HTTP/1.1\r\nX-Filler: ";
  return start + std::string(bytes - start.size() - 4, 'a') + "\r\n\r\n";
}

// The limit on the head is exact however the bytes arrive: a head of one byte more than the
// limit was taken when it came in one read (up to 4 KiB more: the server reads 4 KiB at a time),
// found by an adversarial tester.
TEST(HttpRequestHead, TheLimitIsExact) {
  const size_t limit = HttpLimits{}.max_request_bytes;
  size_t end = 0;
  EXPECT_EQ(request_head_state(head_of(limit), limit, end), HeadState::kComplete);
  EXPECT_EQ(end, limit);
  EXPECT_EQ(request_head_state(head_of(limit + 1), limit, end), HeadState::kTooLong);
  EXPECT_EQ(request_head_state(head_of(limit + 4095), limit, end), HeadState::kTooLong);
  // Bytes after a head within the limit (a body, a pipelined request) do not count against it.
  EXPECT_EQ(request_head_state(head_of(limit) + std::string(5000, 'b'), limit, end), HeadState::kComplete);
  EXPECT_EQ(end, limit);
  // No blank line yet: more may come up to the limit, not one byte after it.
  const std::string open = head_of(limit).substr(0, limit - 2);
  EXPECT_EQ(request_head_state(open, limit, end), HeadState::kIncomplete);
  EXPECT_EQ(request_head_state(open + "\r", limit, end), HeadState::kIncomplete);
  EXPECT_EQ(request_head_state(open + "X:", limit, end), HeadState::kIncomplete);
  EXPECT_EQ(request_head_state(open + "X: ", limit, end), HeadState::kTooLong);
  // Bare line feeds end a head too.
  EXPECT_EQ(request_head_state("GET / HTTP/1.0\n\n", 16, end), HeadState::kComplete);
  EXPECT_EQ(request_head_state("GET / HTTP/1.0\n\n", 15, end), HeadState::kTooLong);
}

TEST(ContentNegotiation, ServesWhatTheScraperPrefers) {
  // Prometheus 2.x's scrape Accept header: OpenMetrics first.
  EXPECT_TRUE(prefers_openmetrics(
      "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
      "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"));
  // Prometheus with OpenMetrics scraping turned off, and curl's default.
  EXPECT_FALSE(prefers_openmetrics("text/plain;version=0.0.4;q=1,*/*;q=0.1"));
  EXPECT_FALSE(prefers_openmetrics("*/*"));
  EXPECT_FALSE(prefers_openmetrics(""));
  EXPECT_TRUE(prefers_openmetrics("application/openmetrics-text"));
  EXPECT_TRUE(prefers_openmetrics("Application/OpenMetrics-Text; q=0.9, text/plain; q=0.2"));
  // A tie, a refusal (q=0), a version not written, a bad q-value: the text format.
  EXPECT_FALSE(prefers_openmetrics("application/openmetrics-text, text/plain"));
  EXPECT_FALSE(prefers_openmetrics("application/openmetrics-text;q=0"));
  EXPECT_FALSE(prefers_openmetrics("application/openmetrics-text;version=2.0.0"));
  EXPECT_FALSE(prefers_openmetrics("application/openmetrics-text;q=abc"));
  EXPECT_FALSE(prefers_openmetrics("text/plain;q=0.9,application/openmetrics-text;q=0.5"));
}

bool listen_on(const std::string& text, bool& loopback, std::string& problem, uint16_t* port = nullptr) {
  sockaddr_storage address = {};
  socklen_t length = 0;
  const bool ok = parse_listen_address(text, address, length, loopback, problem);
  if (ok && port != nullptr)
    *port = ntohs(address.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&address)->sin6_port
                                                : reinterpret_cast<sockaddr_in*>(&address)->sin_port);
  return ok;
}

TEST(ListenAddress, LoopbackUnlessNamedAndNeverAHostName) {
  bool loopback = false;
  std::string problem;
  uint16_t port = 0;
  ASSERT_TRUE(listen_on("127.0.0.1:6060", loopback, problem, &port));
  EXPECT_TRUE(loopback);
  EXPECT_EQ(port, 6060);
  ASSERT_TRUE(listen_on(":0", loopback, problem));
  EXPECT_TRUE(loopback);
  ASSERT_TRUE(listen_on("localhost:1", loopback, problem));
  EXPECT_TRUE(loopback);
  ASSERT_TRUE(listen_on("[::1]:6060", loopback, problem));
  EXPECT_TRUE(loopback);
  ASSERT_TRUE(listen_on("127.1.2.3:80", loopback, problem));
  EXPECT_TRUE(loopback);
  ASSERT_TRUE(listen_on("0.0.0.0:6060", loopback, problem));
  EXPECT_FALSE(loopback);
  ASSERT_TRUE(listen_on("[::]:6060", loopback, problem));
  EXPECT_FALSE(loopback);
  ASSERT_TRUE(listen_on("192.168.1.5:6060", loopback, problem));
  EXPECT_FALSE(loopback);
  EXPECT_FALSE(listen_on("example.com:6060", loopback, problem));
  EXPECT_NE(problem.find("not the host name \"example.com\""), std::string::npos) << problem;
  EXPECT_FALSE(listen_on("127.0.0.1", loopback, problem));
  EXPECT_FALSE(listen_on("127.0.0.1:65536", loopback, problem));
  EXPECT_FALSE(listen_on("127.0.0.1:-1", loopback, problem));
  EXPECT_FALSE(listen_on("127.0.0.1:http", loopback, problem));
  EXPECT_FALSE(listen_on("[::g]:1", loopback, problem));
}

HttpResponse get(const std::string& target) {
  HttpRequest request;
  request.method = "GET";
  const size_t question = target.find('?');
  request.path = target.substr(0, question);
  request.query = question == std::string::npos ? "" : target.substr(question + 1);
  return answer_request(request);
}

TEST(ServeRoutes, BadRequestsGetOneLineAnswers) {
  for (const auto& [target, status] : std::vector<std::pair<std::string, int>>{
           {"/nothing", 404},
           {"/debug/pprof/heap?pid=abc", 400},
           {"/debug/pprof/heap?pid=0", 400},
           {"/debug/pprof/heap?pid=12345678901", 400},
           {"/debug/pprof/heap?pid=1&pid=2", 400},
           {"/debug/pprof/heap?pid=1&leaks=yes", 400},
           {"/debug/pprof/heap?pid=%zz", 400},
           {"/debug/pprof/heap?color=red", 400},
           {"/metrics?x=1", 400},
           {"/api/processes?all", 400},
           {"/debug/pprof/heap?pid=999999999", 404},  // above pid_max: never a tracked process
       }) {
    const HttpResponse response = get(target);
    EXPECT_EQ(response.status, status) << target << ": " << response.body;
    ASSERT_FALSE(response.body.empty()) << target;
    EXPECT_EQ(response.body.find('\n'), response.body.size() - 1) << target << ": " << response.body;
  }
  EXPECT_EQ(get("/").status, 200);
  EXPECT_EQ(get("/api/processes").content_type, "application/json");
}

}  // namespace
}  // namespace heapkeeper::view
