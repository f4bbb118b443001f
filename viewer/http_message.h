// HTTP/1.1's message format as `heapkeeper serve` speaks it (http_server.h): parsing a request's
// head from bytes a client sent (never trusted: every refusal has its status and one line), and
// writing an answer. Pure functions, unit-tested (tests/stats/serve_http_test.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace heapkeeper::view {

struct HttpRequest {
  std::string method;                          // GET or HEAD (the server answers anything else itself, 405)
  std::string path;                            // the target before '?', not decoded
  std::string query;                           // after '?', not decoded
  std::map<std::string, std::string> headers;  // names in lower case; repeated ones joined with ", "
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // more header lines (Content-Encoding...)
};

// A plain-text answer: `body` and a line break.
HttpResponse text_response(int status, const std::string& body);

// Parses one request head ("GET /p?q HTTP/1.1\r\nName: value\r\n...\r\n\r\n", bare LF accepted)
// whose target (path and query) may be up to `max_target_bytes` long. Returns 0 and fills
// `request`, or the status to answer with (400, 405, 414, 505) and the reason in `problem`, one
// line. The server's only parser.
int parse_http_request(const std::string& head, size_t max_target_bytes, HttpRequest& request, std::string& problem);

// Where a request's head ends in what arrived (just past its blank line), or npos.
size_t request_head_end(const std::string& in);

// What arrived so far, against a limit of `max_head_bytes` on the head (request line, headers and
// the blank line that ends them): complete (`end` just past the blank line), too long, or not yet
// complete. The limit is exact whatever the reads brought at once: a head of max_head_bytes is
// taken, one byte more refused, and bytes after a head within the limit do not count.
enum class HeadState { kIncomplete, kComplete, kTooLong };
HeadState request_head_state(const std::string& in, size_t max_head_bytes, size_t& end);

// Whether what arrived so far can still begin a request: a method token and a space. Lets
// garbage (a TLS hello, random bytes) be refused at once instead of at the timeout.
bool could_begin_request(const std::string& in);

// The answer as sent: status line, Content-Type, Content-Length, Connection: close, the extra
// headers, and the body unless `head_only` (a HEAD request).
std::string serialize_response(const HttpResponse& response, bool head_only);

}  // namespace heapkeeper::view
