// `heapkeeper export` and `heapkeeper flamegraph`: heapkeeper's figures in the formats other tools
// read. export writes OpenMetrics text of running processes (process_commands.h), or the heap
// profile of one process or report as pprof's gzipped profile.proto (--format pprof: go tool pprof,
// Pyroscope, Parca) or folded stacks (--format collapsed: flamegraph.pl, inferno, speedscope);
// flamegraph draws that profile as a self-contained SVG (flamegraph_svg.h). Each returns the exit
// status; problems are one line on stderr.
#pragma once

#include <string>
#include <vector>

namespace heapkeeper::view {

struct ExportRequest {
  std::vector<std::string> sources;  // pids, or (pprof, collapsed) one pid or report file
  bool all = false;                  // every tracked process (OpenMetrics)
  std::string format = "prometheus";
  std::string output;  // file; empty or "-": standard output
  bool leaks = false;  // collapsed: leaked bytes instead of live bytes
};
int export_figures(const ExportRequest& request);

int draw_flamegraph(const std::string& source, const std::string& output, bool leaks);

}  // namespace heapkeeper::view
