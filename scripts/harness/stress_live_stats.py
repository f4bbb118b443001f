"""Live stats read while a stress scenario's traced run goes on (stress_scenario.py starts these on
threads beside the workload): every tracked process of the run is read with `heapkeeper stats
--json` as it appears and about once a second, and a program that stops at its hold point
(tests/stress/stress_common.h) is let go once its held blocks show in the live stats."""

import glob
import os
import subprocess
import time

from .common import DEBIAN_PYTHON, ROOT_DIR

CHECK = [DEBIAN_PYTHON, str(ROOT_DIR / "tests/stress/check.py")]


def in_run(pid, token, root):
    """The process belongs to this scenario's traced run: its environment has the run's token
    (children inherit it), or it descends from ROOT (for programs that reuse their
    environment's memory for their process title, as redis-server does)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            if f"HK_STRESS_RUN={token}".encode() in f.read().split(b"\0"):
                return True
    except OSError:
        pass
    for _ in range(10):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            return False
        parent = int(stat[stat.rindex(")") + 2:].split()[1])  # the command name may hold spaces
        if parent == root:
            return True
        if parent <= 1:
            return False
        pid = parent
    return False

def sampler(hk, directory, token, root, stop):
    """Until `stop` is set, reads `heapkeeper stats --json` of every tracked process of the run
    (a segment /dev/shm/heapkeeper.PID.NONCE) into DIR/stats.PID.N.json: at once when it
    appears, then about once a second, at most 120 times. A read that fails while the process
    and its segment are still there is retried once, then logged in DIR/errors.log."""
    taken, last, foreign = {}, {}, set()
    tmp, err = directory / "sample.tmp", directory / "sample.err"
    while not stop.is_set():
        for segment in glob.glob("/dev/shm/heapkeeper.*.*"):
            pid = segment[len("/dev/shm/heapkeeper."):].split(".")[0]
            if not pid.isdigit() or pid in foreign:
                continue
            n = taken.get(pid, 0)
            if n >= 120 or (n > 0 and int(time.monotonic()) - last.get(pid, 0) < 1):
                continue
            if not in_run(int(pid), token, root):
                if os.path.isdir(f"/proc/{pid}"):
                    foreign.add(pid)
                continue
            for attempt in (1, 2):
                with open(tmp, "wb") as out, open(err, "wb") as error:
                    ok = subprocess.run([hk, "stats", pid, "--json"], stdout=out, stderr=error,
                                        stdin=subprocess.DEVNULL).returncode == 0
                if ok:
                    os.replace(tmp, directory / f"stats.{pid}.{n}.json")
                    taken[pid], last[pid] = n + 1, int(time.monotonic())
                    break
                # A process that exits between the listing and the read is no error.
                if not (os.path.isdir(f"/proc/{pid}") and os.path.exists(segment)):
                    break
                if attempt == 2:
                    with open(directory / "errors.log", "a") as log:
                        head = err.read_bytes()[:300].decode(errors="replace")
                        log.write(f"pid {pid}: heapkeeper stats --json failed while the process ran: {head}\n")
                    taken[pid], last[pid] = n + 1, int(time.monotonic())
                time.sleep(0.05)
        time.sleep(0.1)
    tmp.unlink(missing_ok=True)
    err.unlink(missing_ok=True)

def hold_responder(hk, hold, stop):
    """Waits for the program's hold point (HOLD/ready: "PID BLOCKS BYTES"), polls `heapkeeper
    stats --json PID` until the live stats show exactly those blocks at stress_hold_blocks (at
    most 15 s: sites are symbolized only once a reader is watching, at the next publication),
    writes the verdict to HOLD/result and lets the program go on."""
    while not (hold / "ready").exists():
        if stop.is_set():
            return
        time.sleep(0.05)
    pid, blocks, size = (hold / "ready").read_text().split()[:3]
    deadline = time.monotonic() + 15
    while True:
        with open(hold / "stats.json", "wb") as out, open(hold / "stats.err", "wb") as err:
            read = subprocess.run([hk, "stats", pid, "--json"], stdout=out, stderr=err,
                                  stdin=subprocess.DEVNULL).returncode == 0
        if read:
            check = subprocess.run([*CHECK, "hold", str(hold / "stats.json"), blocks, size], capture_output=True,
                                   text=True)
            status, verdict = check.returncode, check.stdout.rstrip("\n")
        else:
            status = 1
            verdict = (f"heapkeeper stats --json {pid} failed: "
                       f"{(hold / 'stats.err').read_bytes()[:300].decode(errors='replace')}".rstrip("\n"))
        if status == 0:
            (hold / "result").write_text(f"ok {verdict}\n")
            break
        if time.monotonic() >= deadline:
            (hold / "result").write_text(f"FAIL {verdict}\n")
            break
        time.sleep(0.2)
    (hold / "go").touch()
