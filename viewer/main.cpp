// The `heapkeeper` command: wiring of its subcommands.
//
// Command-line parsing uses CLI11 (Debian's libcli11-dev): subcommands, typed options, generated
// --help and clear errors come from a well-kept library instead of hand-written argv loops.
#include <fmt/core.h>
#include <sys/types.h>
#include <CLI/CLI.hpp>

#include <string>

#include "viewer/diff_command.h"
#include "viewer/process_commands.h"
#include "viewer/process_id.h"
#include "viewer/profile_commands.h"
#include "viewer/run_command.h"
#include "viewer/serve_command.h"
#include "viewer/show_command.h"
#include "viewer/symbolize_command.h"
#include "viewer/trim_command.h"
#include "viewer/view_command.h"

namespace {

constexpr const char* kEnvironmentHelp = R"(Environment read by the traced program (libheapkeeper.so):
  HEAPKEEPER_STACK_DEPTH=N      frames recorded per allocation stack, 1..128 (default 24)
  HEAPKEEPER_FREE_STACKS=0|1    1: record the full stack of every free for double-free reports; 0 (default):
                                only the calling frame, which keeps frees as cheap as without heapkeeper
  HEAPKEEPER_REPORT=FILE.json   write a JSON report at exit; %p expands to the pid; a relative path is
                                taken from the directory the program started in
  HEAPKEEPER_PPROF=FILE.pb.gz   write a pprof heap profile (gzipped profile.proto: inuse and leaked
                                space and objects) at exit; %p and relative paths as for HEAPKEEPER_REPORT
  HEAPKEEPER_LOG_PATH=FILE      diagnostics and leak reports to FILE (%p = pid) instead of stderr
  HEAPKEEPER_ON_BAD_FREE=abort|continue
                                what to do after reporting an invalid or double free (default abort, as glibc)
  HEAPKEEPER_MODE=off|detect|collect
                                leak scanning: off, report (default), or report and reclaim
  HEAPKEEPER_SCAN_INTERVAL=D    periodic leak scan, e.g. 10s, 500ms; 0 = never (default)
  HEAPKEEPER_STOP_METHOD=ptrace|signals
                                how scans stop the threads: ptrace (default; signals where it is refused)
                                or signals (SIGPWR) from the start
  HEAPKEEPER_SUPPRESSIONS=FILE  LeakSanitizer-style suppressions (leak:PATTERN), a regular file of at most 4 MiB
  HEAPKEEPER_EXITCODE=N         exit status when leaks remain at exit (0 = off)
  HEAPKEEPER_BASELINE=FILE      a JSON report of known leaks: EXITCODE fires only for leaks at other sites
  HEAPKEEPER_HEAP_RESERVE=SIZE  address space reserved for the heap, e.g. 64G (default 4x RAM)
  HEAPKEEPER_ARENAS=N           tracked jemalloc arenas (default one per CPU, at most 8)
  HEAPKEEPER_STATS=0            no live-stats segment in /dev/shm and no publisher thread
  HEAPKEEPER_STATS_DELAY=D      how long a process runs before it makes its segment, e.g. 0, 5s
                                (default 200ms, a forked child 1s; 24h at most)
  HEAPKEEPER_TRIM=auto|off      freed memory goes back to the system: auto (default) every 250 ms (collect
                                mode: jemalloc's 10 s decay); off: only when `heapkeeper trim PID` asks
  HEAPKEEPER_RETAINED=0         scans record no reference graph (no retained sizes in reports)
  HEAPKEEPER_QUIET=1            no "new leaks" lines from periodic scans
  HEAPKEEPER_PYTHON=0|1         1 (default): CPython 3.11's frames (file.py:LINE in function) in every stack;
                                0: native frames only
  HEAPKEEPER_LIBRARY=PATH       (for `heapkeeper run`) the preload library to use
  HEAPKEEPER_BINARY=PATH        the heapkeeper binary that names frames (default: ../bin/heapkeeper beside the library)
  HEAPKEEPER_SYMBOLIZER_LOG=1   the symbolizer prints one line for each module file it reads
Invalid values are reported in one line naming the variable, and the default is used. An empty value is
invalid, except for a path (REPORT, PPROF, LOG_PATH, SUPPRESSIONS, BASELINE): there it means none.)";

}  // namespace

// A pid names one process (viewer/process_id.h). The option's own conversion would also take
// "0x10" (16), "00123" (octal: 83) and "" (0): each command named another process than the one
// typed, or another way than its neighbours (found by an adversarial tester). The text is handed
// on in its plain decimal form.
const CLI::Validator kProcessId(
    [](std::string& text) {
      const pid_t pid = heapkeeper::view::parse_process_id(text);
      if (pid == 0) return heapkeeper::view::process_id_refusal(text);
      text = std::to_string(pid);
      return std::string();
    },
    "PID");

static int run_command_line(int argc, char** argv) {
  CLI::App app{"heapkeeper: a private, tracked heap with leak detection for unchanged Linux programs"};
  app.footer(kEnvironmentHelp);
  app.require_subcommand(1);
  // Bad input gets one line naming the problem (a pid that is not a number, an unknown option).
  app.failure_message([](const CLI::App*, const CLI::Error& error) {
    return fmt::format("heapkeeper: {} (heapkeeper --help lists the commands)\n", error.what());
  });
  app.set_version_flag("--version", "heapkeeper 0.1.0");

  heapkeeper::view::RunOptions run;
  CLI::App* run_cmd = app.add_subcommand("run", "Run PROG under libheapkeeper.so (its exit status is passed through)");
  run_cmd->add_option("--report", run.report_path, "Write the JSON report to FILE at exit (%p = pid)")
      ->type_name("FILE");
  run_cmd->add_option("--stack-depth", run.stack_depth, "Frames per allocation stack, 1..128 (default 24)")
      ->type_name("N");
  run_cmd->add_option("--mode", run.mode, "Leak scanning: off, detect (default) or collect")->type_name("MODE");
  run_cmd->add_option("--scan-interval", run.scan_interval, "Periodic leak scan interval, e.g. 10s (0 = never)")
      ->type_name("D");
  run_cmd->add_option("--on-bad-free", run.on_bad_free, "abort (default) or continue after an invalid/double free")
      ->type_name("P");
  run_cmd->add_option("--suppressions", run.suppressions, "LeakSanitizer-style suppressions file")->type_name("FILE");
  run_cmd->add_option("--exitcode", run.exit_code, "Exit status when leaks remain at exit (0 = off)")->type_name("N");
  run_cmd->add_option("--library", run.library, "Preload library to use (default: ../lib/libheapkeeper.so)")
      ->type_name("PATH");
  run_cmd->add_flag("--quiet", run.quiet, "No summary line at exit");
  run_cmd->add_flag("--python-objects", run.python_objects,
                    "Python programs: every object through malloc (PYTHONMALLOC=malloc), each its own block");
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

  bool list_json = false, list_clean = false;
  CLI::App* list_cmd =
      app.add_subcommand("list", "Tracked processes of this user (pid, state, uptime, live and leaked bytes)");
  list_cmd->add_flag("--json", list_json, "Machine-readable output");
  list_cmd->add_flag("--clean", list_clean, "Remove the segments of processes that are gone");

  pid_t stats_pid = 0;
  bool stats_json = false;
  CLI::App* stats_cmd = app.add_subcommand("stats", "One snapshot of a tracked process's live figures");
  stats_cmd->add_option("pid", stats_pid, "Process id")->required()->transform(kProcessId);
  stats_cmd->add_flag("--json", stats_json, "Machine-readable output (every figure of the snapshot)");

  pid_t scan_pid = 0;
  bool scan_json = false;
  CLI::App* scan_cmd = app.add_subcommand("scan", "Ask a tracked process for a leak scan now and print its result");
  scan_cmd->add_option("pid", scan_pid, "Process id")->required()->transform(kProcessId);
  scan_cmd->add_flag("--json", scan_json, "Print the scan's figures as JSON");

  pid_t report_pid = 0;
  bool report_json = false;
  CLI::App* report_cmd = app.add_subcommand("report", "Leak report of a fresh scan of a tracked process");
  report_cmd->add_option("pid", report_pid, "Process id")->required()->transform(kProcessId);
  report_cmd->add_flag("--json", report_json, "The same JSON document as the exit report (HEAPKEEPER_REPORT)");
  report_cmd->add_option("--sites", sites_shown, "Allocation sites to show (default 10)")->type_name("N");
  report_cmd->add_option("--frames", frames_shown, "Frames per stack to show (default 8)")->type_name("N");

  std::string diff_before, diff_after;
  bool diff_json = false;
  CLI::App* diff_cmd = app.add_subcommand("diff", "What changed between two reports (files, or pids reported now)");
  diff_cmd->add_option("before", diff_before, "A report file (HEAPKEEPER_REPORT, report --json) or a pid")
      ->required()
      ->type_name("REPORT|PID");
  diff_cmd->add_option("after", diff_after, "The same, later")->required()->type_name("REPORT|PID");
  diff_cmd->add_flag("--json", diff_json, "Machine-readable output");
  diff_cmd->add_option("--sites", sites_shown, "Sites to show (default 10)")->type_name("N");

  pid_t why_pid = 0;
  std::string why_target;
  bool why_json = false;
  size_t why_paths = 3;
  CLI::App* why_cmd =
      app.add_subcommand("why", "Who holds a block, or the blocks of an allocation site: shortest retainer paths");
  why_cmd->add_option("pid", why_pid, "Process id")->required()->transform(kProcessId);
  why_cmd->add_option("target", why_target, "A block address (0x...) or a function in the blocks' allocation stacks")
      ->required();
  why_cmd->add_flag("--json", why_json, "Machine-readable output");
  why_cmd->add_option("--paths", why_paths, "How many paths (1 to 16, default 3)")
      ->type_name("N")
      ->check(CLI::Range(1, 16));

  pid_t trim_pid = 0;
  bool trim_json = false;
  CLI::App* trim_cmd = app.add_subcommand(
      "trim", "Make a tracked process give back the freed memory its allocator keeps; RSS before and after");
  trim_cmd->add_option("pid", trim_pid, "Process id")->required()->transform(kProcessId);
  trim_cmd->add_flag("--json", trim_json, "Machine-readable output");

  heapkeeper::view::ExportRequest export_request;
  bool export_prometheus_flag = false;
  CLI::App* export_cmd = app.add_subcommand(
      "export", "Figures for other tools: Prometheus or OpenMetrics text, a pprof profile, or folded stacks");
  export_cmd->add_option("source", export_request.sources, "Process ids (pprof, collapsed: one pid or report file)")
      ->type_name("PID|REPORT.json");
  export_cmd->add_flag("--all", export_request.all, "Every running tracked process of this user (text formats)");
  export_cmd
      ->add_option("--format", export_request.format,
                   "prometheus (default: text format 0.0.4, node_exporter's textfile collector), openmetrics, "
                   "pprof (gzipped profile.proto: go tool pprof) or collapsed "
                   "(folded stacks: flamegraph.pl, speedscope)")
      ->type_name("FORMAT");
  export_cmd->add_option("-o,--output", export_request.output, "Write to FILE instead of standard output")
      ->type_name("FILE");
  export_cmd->add_flag("--leaks", export_request.leaks,
                       "collapsed: leaked bytes instead of live bytes; pprof: leaked_space is the default sample type");
  export_cmd->add_flag("--prometheus", export_prometheus_flag,
                       "Prometheus text format (the default, as --format prometheus)");

  heapkeeper::view::ServeOptions serve_options;
  CLI::App* serve_cmd = app.add_subcommand(
      "serve",
      "HTTP for Prometheus, Parca, Pyroscope, go tool pprof: /metrics, /debug/pprof/heap?pid=N, /api/processes");
  serve_cmd
      ->add_option("--listen", serve_options.listen,
                   "HOST:PORT to listen on (default 127.0.0.1:6060; HOST an IP address: a non-loopback one is "
                   "served only when named here; port 0 picks a free one)")
      ->type_name("ADDRESS");
  serve_cmd
      ->add_option("--timeout", serve_options.timeout_seconds,
                   "Seconds a client may take to send its request (default 10)")
      ->type_name("SECONDS");

  std::string flame_source, flame_output;
  bool flame_leaks = false;
  CLI::App* flame_cmd =
      app.add_subcommand("flamegraph", "A flame graph of live (or leaked) bytes by stack, as a self-contained SVG");
  flame_cmd->add_option("source", flame_source, "A process id or a report file")
      ->required()
      ->type_name("PID|REPORT.json");
  flame_cmd->add_option("-o,--output", flame_output, "The SVG file (default: standard output)")->type_name("FILE");
  flame_cmd->add_flag("--leaks", flame_leaks, "Leaked bytes instead of live bytes");

  std::string dump_file;
  bool symbolize_answer = false, symbolize_text = false;
  CLI::App* symbolize_cmd =
      app.add_subcommand("symbolize", "The JSON report of a raw dump (what libheapkeeper.so hands over at exit)");
  symbolize_cmd->add_option("dump", dump_file, "The raw dump (default: standard input)")->type_name("FILE");
  symbolize_cmd->add_flag("--text", symbolize_text, "The LeakSanitizer-style leak report instead");
  symbolize_cmd->add_flag("--answer", symbolize_answer, "Internal: the library's answer, from stdin to stdout");
  std::string symbolize_serve;
  symbolize_cmd->add_option("--serve", symbolize_serve, "Internal: then serve other processes at SOCKET")
      ->type_name("SOCKET");

  pid_t view_pid = 0;
  CLI::App* view_cmd = app.add_subcommand("view", "Live terminal UI of a tracked process (without PID: pick one)");
  view_cmd->add_option("pid", view_pid, "Process id (default: choose from the tracked processes)")
      ->transform(kProcessId);
  view_cmd->footer(heapkeeper::view::view_key_help());

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }
  if (run_cmd->parsed()) return heapkeeper::view::run_program(run);
  if (show_cmd->parsed()) return heapkeeper::view::show_report(report_file, sites_shown, frames_shown);
  if (list_cmd->parsed()) return heapkeeper::view::list_processes(list_json, list_clean);
  if (stats_cmd->parsed()) return heapkeeper::view::show_stats(stats_pid, stats_json);
  if (scan_cmd->parsed()) return heapkeeper::view::request_scan(scan_pid, scan_json);
  if (report_cmd->parsed()) return heapkeeper::view::fetch_report(report_pid, report_json, sites_shown, frames_shown);
  if (diff_cmd->parsed()) return heapkeeper::view::diff_reports(diff_before, diff_after, diff_json, sites_shown);
  if (trim_cmd->parsed()) return heapkeeper::view::trim_process(trim_pid, trim_json);
  if (why_cmd->parsed()) return heapkeeper::view::explain_retainers(why_pid, why_target, why_json, why_paths);
  if (symbolize_cmd->parsed())
    return heapkeeper::view::symbolize_dump(dump_file, symbolize_answer, symbolize_text, symbolize_serve);
  if (view_cmd->parsed()) return heapkeeper::view::view_processes(view_pid);
  if (export_cmd->parsed()) return heapkeeper::view::export_figures(export_request);
  if (serve_cmd->parsed()) return heapkeeper::view::serve(serve_options);
  if (flame_cmd->parsed()) return heapkeeper::view::draw_flamegraph(flame_source, flame_output, flame_leaks);
  return 0;
}

// Anything the commands did not turn into a message of their own (out of memory, an I/O error in
// a library) still ends as one line and a failing status, not as std::terminate.
int main(int argc, char** argv) {
  try {
    return run_command_line(argc, argv);
  } catch (const std::exception& error) {
    fmt::print(stderr, "heapkeeper: {}\n", error.what());
  } catch (...) {
    fmt::print(stderr, "heapkeeper: unexpected error\n");
  }
  return 1;
}
