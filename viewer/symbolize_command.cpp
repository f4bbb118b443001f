// Implementation of `heapkeeper symbolize` (see symbolize_command.h).
#include "viewer/symbolize_command.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "analysis/module_symbolizer.h"
#include "analysis/report_renderer.h"
#include "analysis/symbolizer_service.h"
#include "report/raw_dump.h"

namespace heapkeeper::view {
namespace {

constexpr size_t kMaxDumpBytes = size_t{1} << 30;

bool read_all(int fd, std::string& out, std::string& error) {
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = std::strerror(errno);
      return false;
    }
    if (n == 0) return true;
    out.append(buffer, static_cast<size_t>(n));
    // Not a dump (a JSON report given by mistake, a disk image): its first bytes say so, and
    // parse_raw_dump says it in one line; reading a gigabyte of it first took 2 s and 1 GB.
    uint64_t magic = 0;
    if (out.size() >= sizeof magic) {
      std::memcpy(&magic, out.data(), sizeof magic);
      if (magic != report::kRawDumpMagic) return true;
    }
    if (out.size() > kMaxDumpBytes) {
      error = "larger than 1 GiB";
      return false;
    }
  }
}

bool write_all(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

int symbolize_dump(const std::string& path, bool answer, bool text, const std::string& serve) {
  // Started by the library with every signal blocked (report/analysis_handoff.cpp): exec has reset
  // the program's handlers, so they can be let through now.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  const bool from_stdin = answer || path.empty() || path == "-";
  const std::string name = from_stdin ? std::string("standard input") : path;
  const int fd = from_stdin ? 0 : ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  // O_NONBLOCK only so that opening a FIFO nobody writes to does not wait (its read then finds the
  // end at once); the reads block: a pipe's writer, `symbolize <(zcat dump.gz)`, may not have
  // written yet, and a non-blocking read said "Resource temporarily unavailable".
  if (fd > 0) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  std::string bytes, error;
  if (fd < 0 || !read_all(fd, bytes, error)) {
    fmt::print(stderr, "heapkeeper: {}: {}\n", name, fd < 0 ? std::strerror(errno) : error);
    if (fd > 0) ::close(fd);
    return 1;
  }
  if (fd > 0) ::close(fd);
  report::RawReport dump;
  if (!report::parse_raw_dump(bytes, dump, error)) {
    const bool json_report = !bytes.empty() && bytes.front() == '{';
    fmt::print(stderr, "heapkeeper: {}: {}{}\n", name, error,
               json_report ? "; it looks like a JSON report, which `heapkeeper show` reads" : "");
    return 1;
  }
  // The user's service's name first, before any module is read (analysis/symbolizer_service.h).
  analysis::UserServiceClaim claim;
  if (answer && !serve.empty()) {
    claim = analysis::claim_user_service(serve);
    std::string reply;
    if (claim.served && analysis::ask_user_service(serve, bytes, reply)) {
      if (!write_all(1, reply)) {
        fmt::print(stderr, "heapkeeper: cannot write the answer: {}\n", std::strerror(errno));
        return 1;
      }
      return 0;
    }
  }
  auto symbolizer = std::make_unique<analysis::ModuleSymbolizer>();
  std::string out;
  if (answer) {
    out = report::serialize_raw_answer(analysis::render_answer(dump, *symbolizer));
  } else if (text) {
    dump.flags = report::kWantLeakText;
    out = analysis::render_answer(dump, *symbolizer).leak_text;
  } else {
    out = analysis::render_json(dump, *symbolizer);
  }
  if (!write_all(1, out)) {
    fmt::print(stderr, "heapkeeper: cannot write the answer: {}\n", std::strerror(errno));
    analysis::release_user_service(claim, serve);
    return 1;
  }
  if (claim.listener >= 0) {
    // The answer is complete once the library sees the end of the pipe; then the next process of
    // this user need not start a binary at all.
    ::close(1);
    ::close(0);
    analysis::start_user_symbolizer_service(claim, serve, std::move(symbolizer));
  }
  return 0;
}

}  // namespace heapkeeper::view
