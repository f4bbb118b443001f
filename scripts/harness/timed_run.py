"""The one way the harness runs a command: wall time, peak RSS, CPU time, exit status, output
captured to files, a time limit, an environment.

Wall time is CLOCK_MONOTONIC around the start of the child and its end (observed through a pidfd,
so there is no polling delay); peak RSS and CPU time (user + system, every thread, and the children
it waited for) come from wait4()'s rusage, as with GNU time. Peak RSS is the maximum over the child
and the children it reaped, not their sum: what we want for wrappers such as heaptrack's script.
Linux carries a process's peak RSS across exec, so a command forked from this Python process starts
at the harness's own 20 MiB: runs whose peak RSS matters (the benchmark's) pass `rusage_exec`, the
compiled rusage_exec.c, which forks the command from its own small image and reports wall time, peak
RSS and CPU time exactly as a C program measures them.

Two ways to bound a command, after GNU timeout's two modes:
  own_group=True   the command leads a process group of its own; past its time it is killed with
                   the whole group (at once, or SIGTERM then SIGKILL after `kill_after` seconds), and
                   whatever the command left in its group is killed when it ends. The benchmark's
                   runs and the stress driver's scenarios use this, so no stray workload keeps
                   loading the machine.
  own_group=False  the command stays in the caller's group (timeout --foreground): past its time it
                   alone gets SIGTERM, then SIGKILL after `kill_after`. Stress workloads use this:
                   their driver ends the scenario's group as a whole.
An interrupt of the harness (SIGINT, SIGTERM, SIGHUP: see install_interrupt_handlers) kills the
command's group before the exception goes on.
"""

import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass

DEVNULL = subprocess.DEVNULL
PIPE = subprocess.PIPE
STDOUT = subprocess.STDOUT  # as stderr: to the same file as stdout


class Interrupted(BaseException):
    """The harness got SIGINT, SIGTERM or SIGHUP."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def install_interrupt_handlers():
    """SIGINT, SIGTERM and SIGHUP raise Interrupted. Handled (not ignored) signals are reset to
    their defaults in every command the harness starts, even when the harness itself was started
    with them ignored (a background job of a non-interactive shell ignores SIGINT)."""
    def raise_interrupted(signum, _frame):
        raise Interrupted(signum)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, raise_interrupted)


@dataclass
class Outcome:
    wall: float = 0.0
    maxrss_kib: int = 0
    cpu: float = 0.0
    exit_code: int | None = None  # None when a signal ended it
    signal: int | None = None
    timed_out: bool = False
    killed: bool = False  # a timed-out command that needed SIGKILL

    @property
    def how(self):
        """exit:N, signal:N or timeout (the benchmark's words)."""
        if self.timed_out:
            return "timeout"
        if self.signal is not None:
            return f"signal:{self.signal}"
        return f"exit:{self.exit_code}"

    @property
    def status(self):
        """The status a shell would see: GNU timeout's 124 (137 when SIGKILL was needed), 128 + N
        for signal N, else the exit code."""
        if self.timed_out:
            return 137 if self.killed else 124
        if self.signal is not None:
            return 128 + self.signal
        return self.exit_code


def _open_output(target):
    """A path is created (truncated); anything else (None, a file, a descriptor) is passed on."""
    if isinstance(target, (str, os.PathLike)):
        return open(target, "wb"), True
    return target, False


class Command:
    """A started command; wait() ends it within its limit and returns its Outcome."""

    def __init__(self, argv, *, env=None, cwd=None, stdin=DEVNULL, stdout=None, stderr=None,
                 timeout=None, kill_after=None, own_group=True, rusage_exec=None):
        self.argv = [str(a) for a in argv]
        self.report = None
        pass_fds = ()
        if rusage_exec is not None:
            self.report, report_end = os.pipe()
            pass_fds = (report_end,)
            self.argv = [str(rusage_exec), str(report_end), *self.argv]
        self.timeout, self.kill_after, self.own_group = timeout, kill_after, own_group
        out, close_out = _open_output(stdout)
        err, close_err = (out, False) if stderr is STDOUT else _open_output(stderr)
        stdin_file, close_in = (open(stdin, "rb"), True) if isinstance(stdin, (str, os.PathLike)) else (stdin, False)
        self.start = time.monotonic()
        try:
            self.process = subprocess.Popen(self.argv, env=env, cwd=cwd, stdin=stdin_file, stdout=out,
                                            stderr=err, process_group=0 if own_group else None,
                                            pass_fds=pass_fds)
        except OSError as error:
            # As a shell would: a message on the command's stderr and status 127.
            self.process = None
            message = f"cannot run {self.argv[0]}: {error.strerror}\n".encode()
            if err is None:
                os.write(2, message)
            elif isinstance(err, int):
                os.write(err, message)
            else:
                err.write(message)
                err.flush()
        finally:
            for file, close in ((out, close_out), (err, close_err), (stdin_file, close_in)):
                if close:
                    file.close()
            for fd in pass_fds:
                os.close(fd)
        self.stdin = self.process.stdin if self.process else None
        self.pid = self.process.pid if self.process else None

    def _signal(self, signum):
        try:
            if self.own_group:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def _wait_until(self, pidfd, deadline):
        """True when the child ended before the deadline (None: no deadline)."""
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        while True:
            left = None if deadline is None else max(0, deadline - time.monotonic())
            if poller.poll(None if left is None else int(left * 1000) + 1):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def wait(self):
        if self.process is None:
            if self.report is not None:
                os.close(self.report)
            return Outcome(wall=time.monotonic() - self.start, exit_code=127)
        outcome = Outcome()
        pidfd = os.pidfd_open(self.pid)
        try:
            deadline = None if self.timeout is None else self.start + self.timeout
            if not self._wait_until(pidfd, deadline):
                outcome.timed_out = True
                if self.kill_after is None:
                    self._signal(signal.SIGKILL)
                else:
                    self._signal(signal.SIGTERM)
                    if not self._wait_until(pidfd, time.monotonic() + self.kill_after):
                        outcome.killed = True
                        self._signal(signal.SIGKILL)
            _, status, usage = os.wait4(self.pid, 0)
        except BaseException:
            if self.report is not None:
                os.close(self.report)
            self._signal(signal.SIGKILL)
            try:
                os.wait4(self.pid, 0)
            except ChildProcessError:
                pass
            raise
        finally:
            os.close(pidfd)
            if self.stdin is not None:
                try:
                    self.stdin.close()
                except OSError:
                    pass
        outcome.wall = time.monotonic() - self.start
        self.process.returncode = status  # reaped here: Popen must not wait for it again
        if self.own_group:
            self._signal(signal.SIGKILL)  # stragglers the command left in its group
        outcome.maxrss_kib = usage.ru_maxrss
        outcome.cpu = usage.ru_utime + usage.ru_stime
        if os.WIFSIGNALED(status):
            outcome.signal = os.WTERMSIG(status)
            if outcome.timed_out and outcome.signal == signal.SIGKILL:
                outcome.killed = True
        else:
            outcome.exit_code = os.WEXITSTATUS(status)
        if self.report is not None:
            self._read_report(outcome)
        return outcome

    def _read_report(self, outcome):
        """The trampoline's line "WALL MAXRSS_KIB HOW CPU" replaces what was measured around it
        (nothing comes when the time limit killed it with its group)."""
        with os.fdopen(self.report, "rb") as f:
            fields = f.read().decode().split()
        if len(fields) != 4 or outcome.timed_out:
            outcome.maxrss_kib, outcome.cpu = 0, 0.0
            return
        outcome.wall, outcome.maxrss_kib, outcome.cpu = float(fields[0]), int(fields[1]), float(fields[3])
        kind, _, number = fields[2].partition(":")
        outcome.exit_code, outcome.signal = (int(number), None) if kind == "exit" else (None, int(number))


def run(argv, **options):
    """Starts the command and waits for it: see Command."""
    return Command(argv, **options).wait()
