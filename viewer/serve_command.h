// `heapkeeper serve`: heapkeeper's figures over HTTP, for the tools that collect from fleets —
// Prometheus scrapes /metrics, Parca, Pyroscope and `go tool pprof` fetch /debug/pprof/heap. It
// runs in the heapkeeper command, never in a traced process, and reads the processes' segments as
// `export` does (the same Prometheus/OpenMetrics text and the same pprof profile).
//
//   /metrics                   every running tracked process of the user: Prometheus's text format
//                              0.0.4, or OpenMetrics when the Accept header prefers it
//   /debug/pprof/heap?pid=N    the process's heap profile (gzipped profile.proto); &leaks=1 makes
//                              leaked_space the default sample type; without pid, the only one
//   /api/processes             `heapkeeper list --json`
//
// It listens on loopback unless --listen names another address (an IP address, not a host name),
// and says so on stderr then: heap profiles name a program's functions and files.
#pragma once

#include <netinet/in.h>

#include <string>
#include <string_view>

#include "viewer/http_server.h"

namespace heapkeeper::view {

struct ServeOptions {
  std::string listen = "127.0.0.1:6060";
  double timeout_seconds = 10;  // for a client to send its request (reading the answer: at least 60 s)
};
int serve(const ServeOptions& options);

// "HOST:PORT", "[V6]:PORT" or ":PORT" (loopback) as a socket address. HOST is an IP address or
// "localhost". False with one line in `problem`.
bool parse_listen_address(const std::string& text, sockaddr_storage& address, socklen_t& length, bool& loopback,
                          std::string& problem);

// Whether an Accept header prefers OpenMetrics (application/openmetrics-text) to Prometheus's text
// format (text/plain), by q-values; no header, or a tie, is the text format.
bool prefers_openmetrics(std::string_view accept);

// The answer to one request (the routes above). Exposed for tests.
HttpResponse answer_request(const HttpRequest& request);

}  // namespace heapkeeper::view
