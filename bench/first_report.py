#!/usr/bin/env python3
"""Times how long after a leak a tool's first report of it appears (scripts/bench.sh).

Runs COMMAND (bench/workloads/late_leak.c under one tool) with its stdout and stderr on pipes,
stamping every line with the time it arrived. The leak moment is the arrival of the program's own
line matching --leak (late_leak prints it right after losing the block); the report moment is the
arrival of the first line matching --report after it, from any of three sources:
  - the program's own output (heapkeeper's periodic scan lines and every tool's exit report);
  - --on-leak CMD: started as soon as the leak line arrives, with {pid} replaced by the pid that
    line names (`heapkeeper report {pid}`: a scan on demand);
  - --after CMD: a shell command run once the program has exited, for tools whose report is made
    by a separate step (heaptrack_print on heaptrack's trace). Its output is read through a pipe,
    so a line counts when the tool has written it out — for heaptrack_print, when it finishes.
Every stamped line goes to --log; one JSON object goes to --result:
  {"leak_s", "report_s", "report_after_leak_s", "source", "exit_s", "end_s", "status", "rss_kib"}
with times in seconds since the start, null when the event never happened.

Python 3 standard library only.
Usage: first_report.py --leak REGEX --report REGEX --result FILE --log FILE [--timeout S]
                       [--on-leak CMD] [--after CMD] -- COMMAND [ARG]...
"""

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time


class Watch:
    """Stamped lines from several pipes, and the first leak and report lines among them."""

    def __init__(self, leak, report, log):
        self.leak, self.report = leak, report
        self.start = time.monotonic()
        self.lock = threading.Lock()
        self.log = log
        self.leak_s = self.report_s = None
        self.leak_pid = None
        self.source = None
        self.leak_seen = threading.Event()

    def read(self, stream, source):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            now = time.monotonic() - self.start
            with self.lock:
                self.log.write(f"{now:9.3f} {source}: {line}\n")
                if self.leak_s is None and self.leak.search(line):
                    self.leak_s = now
                    pid = re.search(r"pid (\d+)", line)
                    self.leak_pid = pid.group(1) if pid else None
                    self.leak_seen.set()
                elif self.leak_s is not None and self.report_s is None and self.report.search(line):
                    self.report_s, self.source = now, source
        stream.close()

    def follow(self, stream, source):
        thread = threading.Thread(target=self.read, args=(stream, source), daemon=True)
        thread.start()
        return thread


def run_helper(watch, command, source, timeout):
    """Runs a shell command, its stdout and stderr read by `watch` as `source`."""
    process = subprocess.Popen(command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    reader = watch.follow(process.stdout, source)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    reader.join(5)
    return process.returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leak", required=True, help="regex of the program's line announcing the leak")
    parser.add_argument("--report", required=True, help="regex of a report line naming the leak")
    parser.add_argument("--result", required=True, help="JSON result file")
    parser.add_argument("--log", required=True, help="every line, stamped")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--on-leak", help="shell command started when the leak line arrives ({pid}: its pid)")
    parser.add_argument("--after", help="shell command run after the program exits")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")

    with open(args.log, "w", encoding="utf-8") as log:
        watch = Watch(re.compile(args.leak), re.compile(args.report), log)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        readers = [watch.follow(process.stdout, "stdout"), watch.follow(process.stderr, "stderr")]
        helper = None
        if args.on_leak:
            def on_leak():
                # Wait for the leak line (or the program's end), then ask at once.
                while not watch.leak_seen.wait(0.05):
                    if process.poll() is not None:
                        return
                if watch.leak_pid is not None:
                    run_helper(watch, args.on_leak.replace("{pid}", shlex.quote(watch.leak_pid)), "on-leak", 120)
            helper = threading.Thread(target=on_leak, daemon=True)
            helper.start()

        status, rss_kib, timed_out = None, None, False
        deadline = watch.start + args.timeout
        while True:
            pid, wait_status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid == process.pid:
                status, rss_kib = wait_status, usage.ru_maxrss
                break
            if time.monotonic() > deadline:
                timed_out = True
                os.killpg(process.pid, signal.SIGKILL)
                _, status, usage = os.wait4(process.pid, 0)
                rss_kib = usage.ru_maxrss
                break
            time.sleep(0.01)
        exit_s = time.monotonic() - watch.start
        try:
            os.killpg(process.pid, signal.SIGKILL)  # stragglers left in its group
        except OSError:
            pass
        for reader in readers:
            reader.join(5)
        if helper is not None:
            helper.join(120)
        if args.after and not timed_out:
            run_helper(watch, args.after, "after", args.timeout)
        end_s = time.monotonic() - watch.start

    if timed_out:
        how = "timeout"
    elif os.WIFSIGNALED(status):
        how = f"signal:{os.WTERMSIG(status)}"
    else:
        how = f"exit:{os.WEXITSTATUS(status)}"
    after_leak = None
    if watch.leak_s is not None and watch.report_s is not None:
        after_leak = round(watch.report_s - watch.leak_s, 3)
    rounded = lambda v: None if v is None else round(v, 3)
    with open(args.result, "w", encoding="utf-8") as f:
        json.dump({"leak_s": rounded(watch.leak_s), "report_s": rounded(watch.report_s),
                   "report_after_leak_s": after_leak, "source": watch.source, "exit_s": rounded(exit_s),
                   "end_s": rounded(end_s), "status": how, "rss_kib": rss_kib}, f)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
