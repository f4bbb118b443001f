// The `heapkeeper` command: wiring of its subcommands.
//
// Command-line parsing uses CLI11 (Debian's libcli11-dev): subcommands, typed options, generated
// --help and clear errors come from a well-kept library instead of hand-written argv loops.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "viewer/run_command.h"
#include "viewer/show_command.h"

namespace {

constexpr const char* kEnvironmentHelp = R"(Environment read by the traced program (libheapkeeper.so):
  HEAPKEEPER_STACK_DEPTH=N      frames recorded per allocation stack, 1..128 (default 24)
  HEAPKEEPER_FREE_STACKS=0|1    1: record the full stack of every free for double-free reports; 0 (default):
                                only the calling frame, which keeps frees as cheap as without heapkeeper
  HEAPKEEPER_REPORT=FILE.json   write a JSON report at exit; %p expands to the pid
  HEAPKEEPER_ON_BAD_FREE=abort|continue
                                what to do after reporting an invalid or double free (default abort, as glibc)
  HEAPKEEPER_MODE=off|detect|collect
                                leak scanning: off, report (default), or report and reclaim
  HEAPKEEPER_SCAN_INTERVAL=D    periodic leak scan, e.g. 10s, 500ms; 0 = never (default)
  HEAPKEEPER_SUPPRESSIONS=FILE  LeakSanitizer-style suppressions (leak:PATTERN)
  HEAPKEEPER_EXITCODE=N         exit status when leaks remain at exit (0 = off)
  HEAPKEEPER_HEAP_RESERVE=SIZE  address space reserved for the heap, e.g. 64G (default 4x RAM)
  HEAPKEEPER_ARENAS=N           tracked jemalloc arenas (default one per CPU, at most 8)
  HEAPKEEPER_QUIET=1            no summary line at exit
  HEAPKEEPER_LIBRARY=PATH       (for `heapkeeper run`) the preload library to use
Invalid values are reported in one line naming the variable, and the default is used.)";

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"heapkeeper: a private, tracked heap with leak detection for unchanged Linux programs"};
  app.footer(kEnvironmentHelp);
  app.require_subcommand(1);
  app.set_version_flag("--version", "heapkeeper 0.1.0");

  heapkeeper::view::RunOptions run;
  CLI::App* run_cmd = app.add_subcommand("run", "Run PROG under libheapkeeper.so (its exit status is passed through)");
  run_cmd->add_option("--report", run.report_path, "Write the JSON report to FILE at exit (%p = pid)")->type_name("FILE");
  run_cmd->add_option("--stack-depth", run.stack_depth, "Frames per allocation stack, 1..128 (default 24)")->type_name("N");
  run_cmd->add_option("--mode", run.mode, "Leak scanning: off, detect (default) or collect")->type_name("MODE");
  run_cmd->add_option("--scan-interval", run.scan_interval, "Periodic leak scan interval, e.g. 10s (0 = never)")->type_name("D");
  run_cmd->add_option("--on-bad-free", run.on_bad_free, "abort (default) or continue after an invalid/double free")->type_name("P");
  run_cmd->add_option("--suppressions", run.suppressions, "LeakSanitizer-style suppressions file")->type_name("FILE");
  run_cmd->add_option("--exitcode", run.exit_code, "Exit status when leaks remain at exit (0 = off)")->type_name("N");
  run_cmd->add_option("--library", run.library, "Preload library to use (default: ../lib/libheapkeeper.so)")->type_name("PATH");
  run_cmd->add_flag("--quiet", run.quiet, "No summary line at exit");
  run_cmd->add_option("command", run.command, "PROG [ARGS...] (put -- before PROG)")->required();
  run_cmd->footer(kEnvironmentHelp);
  run_cmd->prefix_command(false);
  run_cmd->positionals_at_end(true);

  std::string report_file;
  size_t sites_shown = 10, frames_shown = 8;
  CLI::App* show_cmd = app.add_subcommand("show", "Print a JSON report (HEAPKEEPER_REPORT / --report) for people");
  show_cmd->add_option("report", report_file, "The report file")->required()->type_name("FILE.json");
  show_cmd->add_option("--sites", sites_shown, "Allocation sites to show (default 10)")->type_name("N");
  show_cmd->add_option("--frames", frames_shown, "Frames per stack to show (default 8)")->type_name("N");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }
  if (run_cmd->parsed()) return heapkeeper::view::run_program(run);
  if (show_cmd->parsed()) return heapkeeper::view::show_report(report_file, sites_shown, frames_shown);
  return 0;
}
