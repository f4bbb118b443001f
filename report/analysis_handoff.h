// Handing a raw dump (raw_dump.h) to the `heapkeeper` binary and waiting for its answer: symbols,
// suppressions, the leak text and the JSON report are made there, never inside the traced program.
//
// Tried in this order:
// - the symbolizer service of the `heapkeeper run` this process runs under, whose unix socket the
//   run names in HEAPKEEPER_SYMBOLIZER_SOCKET: one connection, no new process, and the service's
//   cache already holds every module an earlier process of the run symbolized;
// - the user's service ($XDG_RUNTIME_DIR/heapkeeper-symbolizer.ID, or /tmp/heapkeeper-UID/...,
//   ID naming the binary's file),
//   which the binary started for an earlier process and which lives while processes keep coming
//   (analysis/symbolizer_service.h); a service must run as our uid (SO_PEERCRED);
// - otherwise `heapkeeper symbolize --answer --serve SOCKET`, found through HEAPKEEPER_BINARY (set by
//   `heapkeeper run`) or next to this library (../bin/heapkeeper), started with a raw clone whose
//   exit signal is 0: the program gets no SIGCHLD and its wait() cannot see or reap the child,
//   which gets the dump on its stdin (a memfd) and answers on a pipe; both are close-on-exec in the
//   program, so nothing leaks into it, and the child's environment has no LD_PRELOAD. Having
//   answered, the binary leaves a user's service behind for the next process (not when the
//   program is a subreaper, whose child that service would become).
// Both are bounded in time (kAnswerTimeoutMs): a hung binary costs the report, not the program.
#pragma once

#include <string>

#include "report/raw_dump.h"

namespace heapkeeper::report {

inline constexpr int kAnswerTimeoutMs = 60000;

// Reads the environment and finds the binary. Start-up, guard held (the program may change its
// environment or directory before it exits).
void locate_analysis_binary();

// True with `answer`, or false with `why` one line (no binary, it failed, it answered nonsense).
bool analyse_dump(const std::string& dump, RawAnswer& answer, std::string& why);

}  // namespace heapkeeper::report
