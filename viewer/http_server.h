// HttpServer: the small HTTP/1.1 server under `heapkeeper serve` (serve_command.h), written for
// clients it cannot trust: one thread, non-blocking sockets and poll(2), and a limit on everything
// a client controls — bytes of a request (its line and headers; a body is never read), the time to
// send it and to read the answer, and the connections open at once. What passes the limits gets
// one request and one answer per connection (Connection: close), which every scraper handles.
// Answers are made on a few worker threads: the slowest (a pprof profile is a leak scan in the
// traced process) hold up neither the other clients nor the timeouts.
//
// Why not a library: Debian's cpp-httplib (0.11.4) keeps reading headers into memory for as long
// as a client sends them (no limit on their count: 475 MB after 8 s of one client's headers, fixed
// upstream only in 0.21), and a client that sends a byte every few seconds holds one of its
// threads for ever; Boost.Beast has the limits, but a 15-line synchronous Beast server takes 14 s
// of CPU to compile with CI's flags, and CI's 15 minutes are spent. This server (with
// http_message.cpp) takes 7 s, as two other viewer files do, and has no dependency.
#pragma once

#include <sys/socket.h>

#include <csignal>
#include <cstdint>
#include <functional>
#include <string>

#include "viewer/http_message.h"

namespace heapkeeper::view {

struct HttpLimits {
  size_t max_request_bytes = size_t{16} * 1024;  // request line and headers
  size_t max_target_bytes = size_t{4} * 1024;    // the request line's target (path and query)
  int request_timeout_ms = 10'000;               // from accept to a complete request
  int response_timeout_ms = 60'000;              // to write the whole answer
  size_t max_connections = 64;                   // open at once; more are answered 503 and closed
  int workers = 4;                               // handlers running at once (a thread each)
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  HttpServer() = default;
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  ~HttpServer();

  // Binds and listens on `address`; false with the reason in `error`.
  bool listen(const sockaddr_storage& address, socklen_t length, std::string& error);
  // The port bound (useful after asking for port 0).
  uint16_t port() const;
  // Serves until `stop` becomes non-zero (a signal handler sets it). This thread does all the
  // I/O; the handler runs on `limits.workers` threads of its own, so a slow answer delays no
  // other client (it must be safe to call concurrently). An exception it throws becomes a 500.
  void run(const Handler& handler, const HttpLimits& limits, const volatile std::sig_atomic_t& stop);

 private:
  int listen_fd_ = -1;
};

}  // namespace heapkeeper::view
