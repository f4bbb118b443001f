"""What the benchmark and the stress front ends share: messages, options, finding programs and
libraries, the data files, the few number formats of the tables (awk's, which the tables were
first written in), and installing missing Debian packages through scripts/install-deps.sh."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parent.parent.parent
HARNESS_DIR = Path(__file__).resolve().parent
# The checks' and the workloads' Python: Debian's, never a pyenv shim or a program under test.
DEBIAN_PYTHON = "/usr/bin/python3"


class Fatal(Exception):
    """A problem that ends the run: printed as one line by the front end."""


class Messages:
    """Lines on stderr prefixed with the front end's name (bench.sh:, stress.sh:)."""

    def __init__(self, prefix):
        self.prefix = prefix

    def note(self, text):
        print(f"{self.prefix}: {text}", file=sys.stderr, flush=True)


def load_data(name):
    """One of the harness's TOML files: scenarios, workloads, tools."""
    with open(HARNESS_DIR / name, "rb") as f:
        return tomllib.load(f)


def parse_options(argv, spec, positional=None):
    """A small getopt: spec maps an option to None (a flag) or to the text of its error when the
    value is missing; both --opt VALUE and --opt=VALUE are accepted. Returns (options, positional
    arguments); an option not in spec is an error, so are positional arguments unless allowed."""
    options, rest = {}, []
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, eq, value = arg.partition("=")
        if name in spec and spec[name] is not None:
            if not eq:
                if not args:
                    raise Fatal(spec[name])
                value = args.pop(0)
            options[name] = value
        elif arg in spec:
            options[arg] = True
        elif arg.startswith("-") or positional is None:
            raise Fatal(f"unknown option '{arg}' (try --help)")
        else:
            rest.append(arg)
    return options, rest


def find_lib(soname):
    """The path of shared library `soname` (exact name), 64-bit preferred, or None."""
    try:
        listing = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        listing = ""
    entries = [line.split() for line in listing.splitlines()[1:]]
    entries = [e for e in entries if e and e[0] == soname]
    for wanted in (lambda e: re.search(r"x86-64|x86_64|64bit", " ".join(e)), lambda e: True):
        for e in entries:
            if wanted(e):
                return e[-1] if os.path.exists(e[-1]) else None
    for d in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"):
        if os.path.exists(os.path.join(d, soname)):
            return os.path.join(d, soname)
    return None


def have(requirement):
    """A requirement of the data files: 'lib:SONAME' (a shared library), '/a/path' (an executable
    file), 'a|b' (any of them), else a command on PATH."""
    if "|" in requirement:
        return any(have(r) for r in requirement.split("|"))
    if requirement.startswith("lib:"):
        return find_lib(requirement[4:]) is not None
    if requirement.startswith("/"):
        return os.access(requirement, os.X_OK)
    return shutil.which(requirement) is not None


def missing_packages(requirements):
    """requirements: [(package, [requirement, ...])]; the packages with a requirement not met, in
    order, each once."""
    wanted = []
    for package, needs in requirements:
        if package not in wanted and not all(have(r) for r in needs):
            wanted.append(package)
    return wanted


def install_missing(packages, allow, log, messages):
    """Installs `packages` with scripts/install-deps.sh (the one installer), apt-get's output in
    `log`. Never fatal: what cannot be installed is skipped later with a note."""
    if not packages:
        return
    listed = " ".join(packages)
    if not allow:
        return messages.note(f"not installing (--no-install): {listed}")
    if os.getuid() != 0:
        return messages.note(f"not root, cannot install: {listed}")
    if shutil.which("apt-get") is None:
        return messages.note(f"no apt-get, cannot install: {listed}")
    messages.note(f"installing missing packages: {listed} (log: {log})")
    open(log, "wb").close()
    with open(log, "ab") as f:  # install-deps.sh appends apt-get's output to the same file
        subprocess.run([str(ROOT_DIR / "scripts/install-deps.sh"), "--log", str(log), *packages],
                       stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
    # install-deps.sh notes what failed in the log; repeat those lines here.
    with open(log, errors="replace") as f:
        for line in f:
            if line.startswith("heapkeeper: ") and "failed" in line:
                messages.note(line[len("heapkeeper: "):].rstrip("\n"))


def expand(template, values):
    """Fills {name} and {a * b}-style fields (lowercase names, integer arithmetic) from `values`.
    Other braces (shell, awk and perl code in the data files) are left alone."""
    def field(match):
        return str(eval(match.group(1), {"__builtins__": {}}, values))  # our own data files only
    return re.sub(r"\{([a-z_][a-z0-9_]*(?:\s*(?://|[-+*])\s*[a-z0-9_]+)*)\}", field, template)


def expand_all(items, values):
    return [expand(str(item), values) for item in items]


def awk_string(number):
    """A number as awk turns it into a string (CONVFMT %.6g, integers as integers)."""
    if float(number).is_integer() and abs(number) < 1e16:
        return str(int(number))
    return f"{number:.6g}"


def median(values):
    """The middle value, or the mean of the two middle ones; None for no values."""
    ordered = sorted(float(v) for v in values)
    n = len(ordered)
    if n == 0:
        return None
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def paired_median(values):
    """The median of ratios kept as awk keeps them (6 significant digits), as the tables always had."""
    return median([float(awk_string(v)) for v in values])


def human_bytes(count):
    value, unit = float(count or 0), 0
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    while value >= 1024 and unit < 4:
        value /= 1024
        unit += 1
    return f"{int(value)} B" if unit == 0 else f"{value:.1f} {units[unit]}"


def first_line_matching(path, pattern):
    """The first match of `pattern` (its first group, if any) in a text file, or None."""
    try:
        with open(path, errors="replace") as f:
            for line in f:
                match = re.search(pattern, line.rstrip("\n"))
                if match:
                    return match.group(1) if match.groups() else match.group(0)
    except OSError:
        pass
    return None


def read_text(path, default=""):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return default


def spaced(lines, count):
    """The first `count` lines, each followed by a blank (what `head -n N | tr '\\n' ' '` made)."""
    return "".join(line + " " for line in lines.splitlines()[:count])
