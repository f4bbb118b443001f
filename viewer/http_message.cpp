// Implementation of HTTP/1.1's message format as `heapkeeper serve` speaks it (see http_message.h).
#include "viewer/http_message.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <string_view>
#include <vector>

namespace heapkeeper::view {
namespace {

constexpr size_t kMaxMethod = 16;  // a longer first word is not an HTTP method

const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 414:
      return "URI Too Long";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return status < 400 ? "OK" : status < 500 ? "Bad Request" : "Internal Server Error";
  }
}

// RFC 9110's tchar: what a method and a header name are made of.
bool is_token_char(unsigned char c) { return std::isalnum(c) != 0 || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr; }

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim_spaces(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

}  // namespace

HttpResponse text_response(int status, const std::string& body) {
  HttpResponse response;
  response.status = status;
  response.body = body + "\n";
  return response;
}

size_t request_head_end(const std::string& in) {
  for (size_t at = in.find('\n'); at != std::string::npos; at = in.find('\n', at + 1)) {
    if (at + 1 < in.size() && in[at + 1] == '\n') return at + 2;
    if (at + 2 < in.size() && in[at + 1] == '\r' && in[at + 2] == '\n') return at + 3;
  }
  return std::string::npos;
}

HeadState request_head_state(const std::string& in, size_t max_head_bytes, size_t& end) {
  end = request_head_end(in);
  if (end != std::string::npos) return end <= max_head_bytes ? HeadState::kComplete : HeadState::kTooLong;
  // No blank line yet: a head that ends later is longer than what is here.
  return in.size() > max_head_bytes ? HeadState::kTooLong : HeadState::kIncomplete;
}

bool could_begin_request(const std::string& in) {
  for (size_t i = 0; i < in.size() && i <= kMaxMethod; ++i) {
    if (in[i] == ' ') return i > 0;
    if (!is_token_char(static_cast<unsigned char>(in[i]))) return false;
  }
  return in.size() <= kMaxMethod;
}

std::string serialize_response(const HttpResponse& response, bool head_only) {
  std::string out = "HTTP/1.1 " + std::to_string(response.status) + " " + reason_phrase(response.status) + "\r\n";
  out += "Content-Type: " + response.content_type + "\r\n";
  out += "Content-Length: " + std::to_string(response.body.size()) + "\r\n";
  out += "Connection: close\r\n";
  for (const auto& [name, value] : response.headers) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  out += "\r\n";
  if (!head_only) out += response.body;
  return out;
}

int parse_http_request(const std::string& head, size_t max_target_bytes, HttpRequest& request, std::string& problem) {
  std::vector<std::string_view> lines;
  std::string_view rest(head);
  while (!rest.empty()) {
    const size_t end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end + 1);
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty()) {
    problem = "an empty request";
    return 400;
  }
  const std::string_view line = lines[0];
  const size_t first = line.find(' ');
  const size_t second = first == std::string_view::npos ? first : line.find(' ', first + 1);
  if (second == std::string_view::npos || line.find(' ', second + 1) != std::string_view::npos || first == 0) {
    problem = "not an HTTP request line (METHOD TARGET HTTP/1.1)";
    return 400;
  }
  const std::string_view method = line.substr(0, first);
  std::string_view target = line.substr(first + 1, second - first - 1);
  const std::string_view version = line.substr(second + 1);
  if (!std::all_of(method.begin(), method.end(), [](char c) { return is_token_char(static_cast<unsigned char>(c)); })) {
    problem = "not an HTTP method";
    return 400;
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    problem = version.substr(0, 5) == "HTTP/" ? "only HTTP/1.0 and HTTP/1.1 are served" : "not an HTTP version";
    return version.substr(0, 5) == "HTTP/" ? 505 : 400;
  }
  if (target.size() > max_target_bytes) {
    problem = "the request target is longer than " + std::to_string(max_target_bytes) + " bytes";
    return 414;
  }
  // The absolute form (a proxy's "GET http://host/path") names the same path.
  if (const size_t scheme = target.find("://"); scheme != std::string_view::npos && target.front() != '/') {
    const size_t path = target.find('/', scheme + 3);
    target = path == std::string_view::npos ? std::string_view("/") : target.substr(path);
  }
  if (target.empty() || target.front() != '/' ||
      !std::all_of(target.begin(), target.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
    problem = "the request target is not a path";
    return 400;
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string_view header = lines[i];
    const size_t colon = header.find(':');
    if (colon == 0 || colon == std::string_view::npos || header.front() == ' ' || header.front() == '\t' ||
        !std::all_of(header.begin(), header.begin() + static_cast<std::ptrdiff_t>(colon),
                     [](char c) { return is_token_char(static_cast<unsigned char>(c)); })) {
      problem = "a malformed header line";
      return 400;
    }
    const std::string_view value = trim_spaces(header.substr(colon + 1));
    if (std::any_of(value.begin(), value.end(), [](char c) { return c == '\0' || c == '\r'; })) {
      problem = "a header value with a control character";
      return 400;
    }
    std::string& slot = request.headers[lower(header.substr(0, colon))];
    if (!slot.empty()) slot += ", ";
    slot += value;
  }
  request.method = std::string(method);
  if (request.method != "GET" && request.method != "HEAD") {
    problem = "only GET and HEAD are served";
    return 405;
  }
  const size_t question = target.find('?');
  request.path = std::string(target.substr(0, question));
  request.query = question == std::string_view::npos ? std::string() : std::string(target.substr(question + 1));
  return 0;
}

}  // namespace heapkeeper::view
