// `heapkeeper list | stats | scan | report | why | export`: reading and driving tracked processes
// through their shared-memory segments (segment_reader.h). Each returns the exit status.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace heapkeeper::view {

int list_processes(bool json, bool clean);
// The JSON array `list --json` prints (and `serve` answers at /api/processes).
std::string process_list_json(bool clean);
int show_stats(pid_t pid, bool json);
int request_scan(pid_t pid, bool json);
int fetch_report(pid_t pid, bool json, size_t sites_shown, size_t frames_shown);
// Figures of tracked processes as Prometheus's text format (version 0.0.4), or as OpenMetrics.
int export_prometheus(const std::vector<pid_t>& pids, bool all, bool openmetrics);
// Their text: the figures of `pids`, or with `all` of every running tracked process; a pid that
// cannot be read is left out and named in `problems`, one line each. (`serve` answers /metrics so.)
std::string prometheus_text(const std::vector<pid_t>& pids, bool all, bool openmetrics,
                            std::vector<std::string>& problems);

int explain_retainers(pid_t pid, const std::string& target, bool json, size_t paths);

// Human-readable byte counts ("12.3 MiB"), shared with the other commands.
std::string human_bytes(uint64_t bytes);

class SegmentReader;
// A stopped process (SIGSTOP, a debugger) cannot answer: says so on one line and returns true.
bool refuse_if_stopped(const SegmentReader& reader, pid_t pid, const char* what);

}  // namespace heapkeeper::view
