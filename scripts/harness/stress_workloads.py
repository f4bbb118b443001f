"""The stress workloads that are more than a list of commands (stress.toml names them): a server
driven by a client, a compiler over a tree, a repository's history. Each takes the run's context
(stress_scenario.RunContext: run, step, command, echo, its working directory) and the scenario's
figures, runs the same way with and without heapkeeper, prints what the comparison checks, and
returns the workload's status."""

import hashlib
import shutil
import socket
import time

from . import timed_run
from .common import DEBIAN_PYTHON, ROOT_DIR

GEN_TREE = str(ROOT_DIR / "tests/stress/gen_tree.py")
DEVNULL = "/dev/null"


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def free_port():
    """A free TCP port on the loopback interface (the kernel picks it; released just before use)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis(run, v):
    """redis-server on a free loopback port, driven by redis-benchmark, read back with redis-cli,
    then a clean SHUTDOWN NOSAVE so that the exit report is written."""
    port = str(free_port())
    run.path("redis.conf").write_text(f'port {port}\nbind 127.0.0.1\nsave ""\nappendonly no\ndir {run.cwd}\n')
    server = run.start(["redis-server", "redis.conf"], stdout="server.log", stderr="stdout")
    cli = ["redis-cli", "-p", port]
    for _ in range(100):
        if run.command([*cli, "ping"], stdout=DEVNULL, stderr=DEVNULL) == 0:
            break
        time.sleep(0.1)
    else:
        run.echo("redis-server did not start")
        server.process.terminate()
        server.wait()
        return 1
    # Without -r every test uses fixed keys, so the data left afterwards is deterministic.
    if run.command(["redis-benchmark", "-p", port, "-n", v["requests"], "-c", "20", "-q", "-t",
                    "set,get,incr,lpush,rpush,lpop,sadd,hset,zadd,lrange_100,mset"],
                   stdout="benchmark.log", stderr="stdout") != 0:
        run.echo("redis-benchmark failed")
    for query in (["dbsize"], ["get", "counter:__rand_int__"], ["llen", "mylist"], ["scard", "myset"],
                  ["hlen", "myhash"], ["zcard", "myzset"], ["strlen", "key:__rand_int__"]):
        run.command([*cli, *query])
    run.command([*cli, "set", "greeting", "hello"], stdout=DEVNULL)
    run.command([*cli, "append", "greeting", ", world"], stdout=DEVNULL)
    run.command([*cli, "get", "greeting"])
    run.command([*cli, "shutdown", "nosave"], stdout=DEVNULL, stderr=DEVNULL)
    run.echo(f"redis-server exit status: {server.wait().status}")
    return 0


def gcc(run, v):
    """gcc compiles the generated tree (prepared once in the scenario's directory) module by module,
    links it and runs the program."""
    shutil.copytree(f"{v['scenario_dir']}/tree", run.path("tree"), symlinks=True)
    run.cwd = run.path("tree")
    run.path("obj").mkdir(exist_ok=True)
    for source in sorted(run.path("src").glob("*.c")):
        # Relative paths and no debug info: objects depend only on the source and the compiler.
        run.step(["gcc", "-O2", "-Wall", "-Iinclude", "-c", f"src/{source.name}", "-o", f"obj/{source.stem}.o"])
    objects = sorted(run.path("obj").glob("*.o"))
    run.echo(f"objects: {hashlib.sha256(b''.join(o.read_bytes() for o in objects)).hexdigest()}")
    run.step(["gcc", "-O2", "-o", "prog", *[f"obj/{o.name}" for o in objects]])
    run.step(["./prog"])
    return 0


def git(run, v):
    """git commits revisions of the generated tree on two branches, merges them, then reads the
    history back every way (log, diff, blame, grep, gc, fsck) and feeds a long-lived
    `cat-file --batch-check` slowly, so that its live stats can be read mid-run."""
    when = 1700000000
    revisions = v["revisions"]

    def commit_at(seconds, message):
        date = {"GIT_AUTHOR_DATE": f"@{seconds} +0000", "GIT_COMMITTER_DATE": f"@{seconds} +0000"}
        run.step(["git", "commit", "-q", "-m", message], env=date)

    def generate(revision):
        run.command([DEBIAN_PYTHON, GEN_TREE, ".", v["modules"], v["functions"], revision])

    def append(name, line):
        with open(run.path(name), "a") as f:
            f.write(line + "\n")

    run.step(["git", "init", "-q", "-b", "main", "repo"])
    run.cwd = run.path("repo")
    run.step(["git", "config", "gc.auto", "0"])
    run.step(["git", "config", "maintenance.auto", "false"])
    run.step(["git", "config", "pack.threads", "1"])  # several threads make the delta search nondeterministic
    generate(0)
    run.step(["git", "add", "-A"])
    commit_at(when, "Import the generated tree")
    for revision in range(1, revisions + 1):
        if revision == revisions // 2:
            run.step(["git", "checkout", "-q", "-b", "feature"])
        generate(revision)
        append("NOTES", f"revision {revision}")
        run.step(["git", "add", "-A"])
        commit_at(when + revision * 3600, f"Revision {revision}")
        if revision == revisions // 2 + 1:
            run.step(["git", "checkout", "-q", "main"])
            append("MAIN", f"main line {revision}")
            run.step(["git", "add", "MAIN"])
            commit_at(when + revision * 3600 + 60, "Main line work")
            merged = when + revision * 3600 + 120
            run.step(["git", "merge", "-q", "--no-ff", "-m", "Merge feature", "feature"],
                     env={"GIT_AUTHOR_DATE": f"@{merged} +0000", "GIT_COMMITTER_DATE": f"@{merged} +0000"})
    run.step(["git", "log", "--graph", "--stat", "--format=%h %an %ad %s", "--date=iso-strict"])
    run.echo("--- hashes")
    run.step(["git", "log", "--all", "--format=%H"])
    run.step(["git", "diff", "--stat", "HEAD~3", "HEAD"])
    run.step(["git", "blame", "-s", "src/module_000.c"], stdout="blame.txt")
    run.echo(f"blame: {sha256_of(run.path('blame.txt'))}")
    run.step(["git", "grep", "-c", "uint64_t", "HEAD"])
    run.step(["git", "gc", "-q", "--aggressive"])
    run.step(["git", "count-objects", "-v"])
    run.step(["git", "fsck", "--no-progress", "--strict"])
    # A long-lived git process fed slowly, as tools use `cat-file --batch`: it lives long enough
    # for the live stats to be read mid-run (a few milliseconds a line, what the shell loop that
    # fed it before took).
    run.step(["git", "rev-list", "--objects", "--all"], stdout="objects.txt")
    batch = run.start(["git", "cat-file", "--batch-check"], stdin=timed_run.PIPE, stdout="batch.txt")
    try:
        for line in run.path("objects.txt").read_text().splitlines():
            batch.stdin.write((line.split(" ")[0] + "\n").encode())
            batch.stdin.flush()
            time.sleep(0.003)
    except BrokenPipeError:
        pass
    finally:
        try:
            batch.stdin.close()  # the end of its input: cat-file exits
        except BrokenPipeError:
            pass
    status = batch.wait().status
    if status != 0:
        run.echo(f"[exit {status}] git cat-file --batch-check")
    listing = run.path("batch.txt").read_bytes()
    lines = listing.count(b"\n")
    run.echo(f"objects: {lines}, {hashlib.sha256(listing).hexdigest()}")
    run.step(["git", "status", "--porcelain"])
    return 0
