// Implementation of the HTTP server (see http_server.h); the message format is http_message.h's.
//
// Each connection goes through four phases: reading its request (until the blank line that ends
// the head, within request_timeout_ms and max_request_bytes), being answered by a worker (the
// handler keeps its own time limits), writing the answer (within response_timeout_ms), and
// draining: after the answer the server shuts its side down and reads
// and discards what the client still sends for a moment before closing, because closing a socket
// with unread bytes makes the kernel send a reset that can destroy the answer in flight (a request
// with a body, or pipelined requests).
#include "viewer/http_server.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <utility>

namespace heapkeeper::view {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kDrainMs = 1000;     // how long a closing connection's leftover bytes are read
constexpr int kStopCheckMs = 250;  // poll's longest sleep, so that `stop` is seen soon

struct Connection {
  enum class Phase { kReading, kHandling, kWriting, kDraining };
  int fd = -1;
  uint64_t id = 0;
  bool head_only = false;  // a HEAD request: the answer without its body
  Phase phase = Phase::kReading;
  Clock::time_point accepted, deadline;
  std::string in, out;
  size_t sent = 0;
};

void start_answer(Connection& connection, const HttpResponse& response, bool head_only, const HttpLimits& limits) {
  connection.out = serialize_response(response, head_only);
  connection.sent = 0;
  connection.in.clear();
  connection.in.shrink_to_fit();
  connection.phase = Connection::Phase::kWriting;
  connection.deadline = Clock::now() + std::chrono::milliseconds(limits.response_timeout_ms);
}

void start_draining(Connection& connection) {
  shutdown(connection.fd, SHUT_WR);
  connection.out.clear();
  connection.out.shrink_to_fit();
  connection.phase = Connection::Phase::kDraining;
  connection.deadline = Clock::now() + std::chrono::milliseconds(kDrainMs);
}

// Handlers run on worker threads, so that a slow answer (a pprof profile is a leak scan in the
// process: up to a minute) delays neither other clients nor the loop's timeouts. The pool's state
// is shared with the workers, which are detached: at exit, one still in a handler must not hold
// the process up (it dies with it).
struct Job {
  uint64_t connection = 0;
  HttpRequest request;
};
struct Done {
  uint64_t connection = 0;
  HttpResponse response;
};
class WorkerPool {
 public:
  explicit WorkerPool(HttpServer::Handler handler) : handler_(std::move(handler)) {
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  }
  ~WorkerPool() {
    if (wake_fd_ >= 0) close(wake_fd_);
  }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  static std::shared_ptr<WorkerPool> start(const HttpServer::Handler& handler, int workers) {
    auto pool = std::make_shared<WorkerPool>(handler);
    for (int i = 0; i < workers; ++i) std::thread([pool] { pool->work(); }).detach();
    return pool;
  }
  int wake_fd() const { return wake_fd_; }
  void submit(Job job) {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      jobs_.push_back(std::move(job));
    }
    ready_.notify_one();
  }
  std::vector<Done> take_done() {
    uint64_t count = 0;
    (void)!read(wake_fd_, &count, sizeof count);
    const std::lock_guard<std::mutex> lock(mutex_);
    return std::exchange(done_, {});
  }
  void stop() {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
  }

 private:
  void work() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
        if (stopping_) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      Done done{job.connection, {}};
      try {
        done.response = handler_(job.request);
      } catch (const std::exception& error) {
        done.response = text_response(500, std::string("heapkeeper: ") + error.what());
      }
      {
        const std::lock_guard<std::mutex> lock(mutex_);
        done_.push_back(std::move(done));
      }
      const uint64_t one = 1;
      (void)!write(wake_fd_, &one, sizeof one);
    }
  }

  const HttpServer::Handler handler_;
  int wake_fd_ = -1;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Job> jobs_;
  std::vector<Done> done_;
  bool stopping_ = false;
};

// Reads what is there; false when the connection is to be closed at once (EOF, error).
bool read_some(Connection& connection, size_t limit) {
  char buffer[4096];
  for (;;) {
    const ssize_t n = recv(connection.fd, buffer, sizeof buffer, 0);
    if (n > 0) {
      if (connection.phase == Connection::Phase::kReading) {
        connection.in.append(buffer, static_cast<size_t>(n));
        if (connection.in.size() > limit) return true;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
}

// Writes what the socket takes; false on an error (the client went away).
bool write_some(Connection& connection) {
  while (connection.sent < connection.out.size()) {
    const ssize_t n = send(connection.fd, connection.out.data() + connection.sent,
                           connection.out.size() - connection.sent, MSG_NOSIGNAL);
    if (n > 0) {
      connection.sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
  return true;
}

}  // namespace

HttpServer::~HttpServer() {
  if (listen_fd_ >= 0) close(listen_fd_);
}

bool HttpServer::listen(const sockaddr_storage& address, socklen_t length, std::string& error) {
  listen_fd_ = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  const int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // "::" means IPv6 only, as it says: 0.0.0.0 is named separately.
  if (address.ss_family == AF_INET6) setsockopt(listen_fd_, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(listen_fd_, reinterpret_cast<const sockaddr*>(&address), length) != 0 || ::listen(listen_fd_, 64) != 0) {
    error = std::strerror(errno);
    close(listen_fd_);
    listen_fd_ = -1;
    return false;
  }
  return true;
}

uint16_t HttpServer::port() const {
  sockaddr_storage bound = {};
  socklen_t length = sizeof bound;
  if (listen_fd_ < 0 || getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &length) != 0) return 0;
  if (bound.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port);
  return ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
}

void HttpServer::run(const Handler& handler, const HttpLimits& limits, const volatile std::sig_atomic_t& stop) {
  const std::shared_ptr<WorkerPool> pool = WorkerPool::start(handler, std::max(1, limits.workers));
  std::list<Connection> connections;  // oldest first
  uint64_t next_id = 1;
  std::vector<pollfd> polled;
  std::vector<Connection*> polled_connections;
  auto close_connection = [&](std::list<Connection>::iterator it) {
    close(it->fd);
    return connections.erase(it);
  };
  // The head is complete: refused here, or handed to a worker.
  auto take_request = [&](Connection& connection, size_t end) {
    Job job{connection.id, {}};
    std::string problem;
    if (const int status =
            parse_http_request(connection.in.substr(0, end), limits.max_target_bytes, job.request, problem);
        status != 0) {
      HttpResponse response = text_response(status, problem);
      if (status == 405) response.headers.emplace_back("Allow", "GET, HEAD");
      start_answer(connection, response, false, limits);
      return;
    }
    connection.head_only = job.request.method == "HEAD";
    connection.phase = Connection::Phase::kHandling;
    connection.deadline = Clock::time_point::max();  // the handlers have their own time limits
    connection.in.clear();
    pool->submit(std::move(job));
  };
  while (stop == 0) {
    polled.clear();
    polled_connections.clear();
    polled.push_back({listen_fd_, POLLIN, 0});
    polled.push_back({pool->wake_fd(), POLLIN, 0});
    polled_connections.assign(2, nullptr);
    Clock::time_point wake = Clock::now() + std::chrono::milliseconds(kStopCheckMs);
    for (Connection& connection : connections) {
      if (connection.phase == Connection::Phase::kHandling) continue;
      polled.push_back(
          {connection.fd, static_cast<short>(connection.phase == Connection::Phase::kWriting ? POLLOUT : POLLIN), 0});
      polled_connections.push_back(&connection);
      wake = std::min(wake, connection.deadline);
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(wake - Clock::now()).count();
    const int ready = poll(polled.data(), polled.size(), static_cast<int>(std::max<int64_t>(wait, 0)) + 1);
    if (ready < 0 && errno != EINTR) break;

    for (size_t i = 2; ready > 0 && i < polled.size(); ++i) {
      if (polled[i].revents == 0) continue;
      Connection& connection = *polled_connections[i];
      bool keep = true;
      if (connection.phase == Connection::Phase::kWriting) {
        keep = write_some(connection);
        if (keep && connection.sent == connection.out.size()) start_draining(connection);
      } else {
        keep = read_some(connection, limits.max_request_bytes);
        if (connection.phase == Connection::Phase::kReading) {
          // One read may bring a whole head past the limit: the limit is on where the head ends,
          // not on how much was buffered when it was looked for (up to 4 KiB more were taken).
          size_t end = 0;
          const HeadState head = request_head_state(connection.in, limits.max_request_bytes, end);
          if (head == HeadState::kComplete) {
            take_request(connection, end);
          } else if (head == HeadState::kTooLong) {
            start_answer(connection,
                         text_response(431, "the request head is longer than " +
                                                std::to_string(limits.max_request_bytes) + " bytes"),
                         false, limits);
          } else if (!could_begin_request(connection.in)) {
            start_answer(connection, text_response(400, "not an HTTP request"), false, limits);
          }
          // else: more to come, or (keep false) the client left before its request was complete.
        }
      }
      if (!keep) connection.fd = -connection.fd - 1;  // closed below
    }
    // Answers the workers finished; a connection gone meanwhile is not waited for.
    if (polled[1].revents & POLLIN) {
      for (Done& done : pool->take_done()) {
        const auto it = std::find_if(connections.begin(), connections.end(),
                                     [&](const Connection& c) { return c.id == done.connection; });
        if (it == connections.end() || it->fd < 0) continue;
        start_answer(*it, done.response, it->head_only, limits);
        if (!write_some(*it))
          it->fd = -it->fd - 1;
        else if (it->sent == it->out.size())
          start_draining(*it);
      }
    }
    // Closed, finished or out of time.
    const Clock::time_point now = Clock::now();
    for (auto it = connections.begin(); it != connections.end();) {
      if (it->fd < 0) {
        it->fd = -it->fd - 1;
        it = close_connection(it);
      } else if (now >= it->deadline) {
        if (it->phase == Connection::Phase::kReading) {
          // Slow or silent: told once, without waiting for it to read the answer.
          const std::string answer = serialize_response(
              text_response(408,
                            fmt::format("the request took longer than {:g} s", limits.request_timeout_ms / 1000.0)),
              false);
          (void)send(it->fd, answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        it = close_connection(it);
      } else {
        ++it;
      }
    }

    if (polled[0].revents & POLLIN) {
      for (;;) {
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;  // EAGAIN, or out of descriptors: the backlog waits
        if (connections.size() >= limits.max_connections) {
          // Full: the connection waiting longest for its request goes (a client that sends its
          // request at once is never the oldest); if all are being answered, the newcomer is told.
          const auto oldest = std::find_if(connections.begin(), connections.end(), [](const Connection& c) {
            return c.phase == Connection::Phase::kReading || c.phase == Connection::Phase::kDraining;
          });
          if (oldest != connections.end()) {
            close_connection(oldest);
          } else {
            const std::string busy = serialize_response(text_response(503, "too many connections"), false);
            (void)send(fd, busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            close(fd);
            continue;
          }
        }
        Connection connection;
        connection.fd = fd;
        connection.id = next_id++;
        connection.accepted = Clock::now();
        connection.deadline = connection.accepted + std::chrono::milliseconds(limits.request_timeout_ms);
        connections.push_back(std::move(connection));
      }
    }
  }
  pool->stop();
  for (Connection& connection : connections) close(connection.fd);
}

}  // namespace heapkeeper::view
