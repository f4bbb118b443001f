#!/usr/bin/env python3
"""Writes preload/start_path.ld: the functions of libheapkeeper.so that a short traced process runs.

The kernel maps a library's code 64 KiB around each page a process first executes, so the start-up,
first-allocation and exit code spread over the library's text made almost all of it resident in
every traced process (issue #12). The preload library is linked with this script (INSERT BEFORE
.text), which gathers these functions at the start of the text. It lists the functions callgrind saw
run: names that no longer exist are ignored, a new function missing from it only costs its page.
jemalloc's archive is not built with one section per function: its objects of which any function
ran follow, whole, so that the objects no short process runs (profiling, the statistics printer,
the huge-page allocator...) stay out of the windows around the ones every process runs.

Those objects are laid out window by window, since their code cannot be reordered: the section
starts at a 64 KiB boundary (the library is loaded at one: preload/CMakeLists.txt links it with
64 KiB segment alignment), and an object whose run functions leave a gap of a whole window or more
(ctl.pic.o: the mallctl tree's handlers, of which start-up runs a few at both ends) is padded so
that its gap covers whole windows, which no short process then maps. The space before it takes the
objects run throughout; heapkeeper's own functions follow; last come the objects run only near their
start, whose unrun rest lies beyond the last window a short process maps.

Usage: scripts/start_path_sections.py LIBRARY     (rewrites preload/start_path.ld, keeping what it placed)
       scripts/start_path_sections.py --check preload/start_path.ld LIBRARY
  (after a build, whose lib/ holds LIBRARY and the renamed jemalloc archive; needs valgrind, nm and a
  C compiler). --check exits 1, naming them, when functions that ran are not placed by the script
  (integration.start_path runs it: a renamed or new start-up function otherwise silently costs
  every traced process a code window).
"""
import os
import re
import subprocess
import sys
import tempfile

REPOSITORY = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

HEADER = """/* The functions every traced process runs: start-up, its first allocations and frees, a fork,
 * the exit check. Gathered ahead of the rest of libheapkeeper.so's text, so that a short process
 * maps a few 64 KiB windows of it rather than all (issue #12). Written by
 * scripts/start_path_sections.py; see preload/CMakeLists.txt. */
"""


# What only jemalloc's own fork handlers run, in a fork that is not quiet (their lock-order
# checker's fork steps, witness.pic.o: 449 bytes).
FULL_FORK_ONLY = {"je_witness_prefork", "je_witness_postfork_parent", "je_witness_postfork_child"}


def run_traced(library, command, out_dir, report=None, settings=None):
    # heapkeeper's defaults whatever the caller's environment holds (a HEAPKEEPER_STATS=0 or a scan
    # interval would change what runs), and no other preload.
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("HEAPKEEPER_") and name != "LD_PRELOAD"}
    env["HEAPKEEPER_MODE"] = "detect"
    if report is not None:
        env["HEAPKEEPER_REPORT"] = report
    # Under callgrind a process outlives the 200 ms after which a traced process makes its live-stats
    # segment; the short processes the section is for never get there. Without this, the segment's
    # creation and publishing (some 8 KB) counted as start-up code, and the section ran a window long.
    env["HEAPKEEPER_STATS_DELAY"] = "24h"
    env.update(settings or {})
    # The heapkeeper binary a report is handed to runs untraced: its functions are not the library's.
    subprocess.run(["valgrind", "--tool=callgrind", "--demangle=no", "--trace-children=yes",
                    "--trace-children-skip=*/heapkeeper", f"--callgrind-out-file={out_dir}/callgrind.%p", "env",
                    f"LD_PRELOAD={library}"] + command,
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def names_seen(out_dir):
    """The function names in the callgrind files of `out_dir`."""
    ran = set()
    for name in os.listdir(out_dir):
        if name.startswith("callgrind."):
            for line in open(os.path.join(out_dir, name), errors="replace"):
                match = re.match(r"c?fn=\(\d+\) (\S+)", line)
                if match:
                    ran.add(match.group(1))
    return ran


def functions_defined(path):
    """[(member, name, address, size)] of the functions a file defines (nm); member is None for a
    file that is no archive, size 0 where nm gives none (assembly)."""
    listing = subprocess.run(["nm", "-A", "-S", "--defined-only", path], check=True, capture_output=True,
                             text=True).stdout
    functions = []
    for line in listing.splitlines():
        # path[:member]:address [size] type name
        fields = line.split()
        if len(fields) in (3, 4) and fields[-2] in "tTwW":
            where = fields[0].split(":")
            member = where[-2] if len(where) > 2 else None
            size = int(fields[1], 16) if len(fields) == 4 else 0
            functions.append((member, fields[-1], int(where[-1], 16), size))
    return functions


def jemalloc_objects_run(archive, ran):
    """The members of jemalloc's archive that define a function callgrind saw run, in archive order.

    A local name defined in several members (an inlined helper such as arena_dalloc_no_tcache)
    cannot say which of them ran, and is not counted."""
    definitions = {}
    for member, name, _, _ in functions_defined(archive):
        definitions.setdefault(name, []).append(member)
    members = []
    for name, where in definitions.items():
        if name in ran and len(where) == 1 and where[0] not in members:
            members.append(where[0])
    order = list(dict.fromkeys(member for where in definitions.values() for member in where))
    return sorted(members, key=order.index)


WINDOW = 0x10000  # the kernel's fault-around window (fault_around_bytes)


def sections(elf):
    """{name: (address, size, alignment)} of an ELF file's sections (readelf -SW)."""
    headers = subprocess.run(["readelf", "-SW", elf], check=True, capture_output=True, text=True).stdout
    table = {}
    for line in headers.splitlines():
        # [Nr] Name Type Address Off Size ES Flg Lk Inf Al (Flg may be empty)
        fields = re.sub(r"^\s*\[\s*\d+\]", "", line).split()
        if len(fields) >= 10 and re.fullmatch(r"[0-9a-f]+", fields[2]):
            table[fields[0]] = (int(fields[2], 16), int(fields[4], 16), int(fields[-1]))
    return table


def member_texts(archive, members):
    """{member: (size, alignment)} of each member's .text."""
    texts = {}
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(["ar", "x", os.path.realpath(archive)] + members, cwd=work, check=True)
        for member in members:
            _, size, alignment = sections(os.path.join(work, member))[".text"]
            texts[member] = (size, alignment)
    return texts


def run_intervals(archive, ran):
    """{member: [(start, end)]}: the byte ranges of the functions that ran, within each member's .text."""
    intervals = {}
    for member, name, start, size in functions_defined(archive):
        if name in ran and size > 0:
            intervals.setdefault(member, []).append((start, start + size))
    return {member: sorted(spans) for member, spans in intervals.items()}


def largest_gap(spans, size):
    """(start, end) of the longest stretch of a member's .text where nothing ran."""
    best, reached = (0, 0), 0
    for start, end in spans + [(size, size)]:
        if start - reached > best[1] - best[0]:
            best = (reached, start)
        reached = max(reached, end)
    return best


def align_up(value, alignment):
    return (value + alignment - 1) // alignment * alignment


def whole_windows(start, end):
    return max(0, end // WINDOW - align_up(start, WINDOW) // WINDOW)


def section_start(library):
    """Where .text.heapkeeper_start starts within its window: after .init, .plt and .plt.got, which
    start the text segment, at a window boundary (64 KiB segment alignment)."""
    table = sections(library)
    end = max((table[name][0] + table[name][1] for name in (".init", ".plt", ".plt.got") if name in table),
              default=0)
    return align_up(end, 16) % WINDOW


# Room left in the first window for .plt to grow (16 bytes an imported function) before the
# objects placed ahead of the first boundary overflow it and push the rest a window on.
PLT_GROWTH = 0x400


def jemalloc_layout(archive, members, ran, start):
    """(lines before heapkeeper's functions, lines after them): the run jemalloc objects, at offsets
    computed as the linker places them (each .text at its alignment) from `start`, the section's
    offset in its window."""
    texts = member_texts(archive, members)
    spans = run_intervals(archive, ran)
    gapped, tail, dense = [], [], []
    for member in members:
        size = texts[member][0]
        gap = largest_gap(spans.get(member, []), size)
        if gap[1] - gap[0] >= WINDOW:
            gapped.append(member)
        elif gap[1] == size and size - gap[0] >= 8192:
            tail.append(member)
        else:
            dense.append(member)
    dense.sort(key=lambda member: -texts[member][0])
    tail.sort(key=lambda member: texts[member][0] - largest_gap(spans.get(member, []), texts[member][0])[0])
    lines, position = [], start

    def place(member):
        nonlocal position
        size, alignment = texts[member]
        position = align_up(position, alignment) + size
        lines.append(f"    *libheapkeeper_jemalloc.a:{member}(.text)")

    def fill(limit):
        """Places the dense objects that fit before `limit`, largest first."""
        for candidate in list(dense):
            size, alignment = texts[candidate]
            if align_up(position, alignment) + size <= limit:
                place(candidate)
                dense.remove(candidate)

    # The rest of .init's window, then a boundary: the largest object (jemalloc.pic.o, whose run
    # code spans two windows when it starts one), then each gapped object where its gap covers the
    # most whole windows, the space before it filled.
    fill(WINDOW - PLT_GROWTH)
    lines.append("    . = ALIGN(0x10000);")
    position = 0
    if dense:
        place(dense.pop(0))
    for member in gapped:
        size, alignment = texts[member]
        gap = largest_gap(spans.get(member, []), size)
        most = (gap[1] - gap[0]) // WINDOW
        # The middle of the offsets that give the most whole windows: the same layout holds if
        # what precedes it moves a little.
        first = align_up(position, alignment)
        while whole_windows(first + gap[0], first + gap[1]) < most:
            first += alignment
        last = first
        while whole_windows(last + alignment + gap[0], last + alignment + gap[1]) == most:
            last += alignment
        target = align_up((first + last) // 2, alignment)
        fill(target)
        if target > position:
            lines.append(f"    . += 0x{target - position:x};")
            position = target
        place(member)
    for member in dense:
        place(member)
    return lines, [f"    *libheapkeeper_jemalloc.a:{member}(.text)" for member in tail]


def member_bases(library, archive, members):
    """{member: address of its .text in `library`}, found through a function name that only that
    member defines, in the archive and in the library alike."""
    owners, offsets = {}, {}
    for member, name, address, _ in functions_defined(archive):
        owners.setdefault(name, set()).add(member)
        offsets[(member, name)] = address
    addresses = {}
    for _, name, address, _ in functions_defined(library):
        addresses.setdefault(name, []).append(address)
    bases = {}
    for name, where in owners.items():
        member = next(iter(where))
        if len(where) == 1 and member in members and member not in bases and len(addresses.get(name, [])) == 1:
            bases[member] = addresses[name][0] - offsets[(member, name)]
    return bases


def layout_faults(library, ran):
    """What the built library's layout misses of the script's intent: a gapped object whose gap does
    not cover its whole windows (the archive changed under the script), the section's first window
    overflowed (.plt grew past PLT_GROWTH), each a window every short process maps for nothing."""
    archive = os.path.join(os.path.dirname(library), "libheapkeeper_jemalloc.a")
    members = jemalloc_objects_run(archive, ran)
    texts = member_texts(archive, members)
    spans = run_intervals(archive, ran)
    bases = member_bases(library, archive, members)
    faults = []
    for member in members:
        size = texts[member][0]
        gap = largest_gap(spans.get(member, []), size)
        most = (gap[1] - gap[0]) // WINDOW
        if most == 0 or member not in bases:
            continue
        covered = whole_windows(bases[member] + gap[0], bases[member] + gap[1])
        if covered < most:
            faults.append(f"{member}: its unrun code covers {covered} whole 64 KiB window(s), not {most}")
    start = sections(library).get(".text.heapkeeper_start", (0, 0, 0))[0]
    if start != 0 and align_up(start, WINDOW) + WINDOW <= min(bases.values(), default=start):
        faults.append("the objects placed before the section's first window boundary overflowed it")
    return faults


def functions_run(library):
    """The names of the functions callgrind saw run in the short processes the section is for: /bin/true,
    a program making one allocation, and a traced parent that forks and waits; and, apart, those
    that /bin/true and one allocation run only when they write a report (HEAPKEEPER_REPORT, which a
    build's or a shell loop's every process may have set). Each runs twice: a function run by one
    of the process's threads only when it wins a race (the live-stats thread against exit) is still
    seen."""
    with tempfile.TemporaryDirectory() as work, tempfile.TemporaryDirectory() as reporting:
        one_allocation = os.path.join(work, "one_allocation")
        subprocess.run(["cc", "-O2", "-o", one_allocation, os.path.join(REPOSITORY, "bench/workloads/one_allocation.c")],
                       check=True)
        # A traced parent that forks and waits, as a shell or make does (spawn_loop runs untraced).
        # Its fork leaves jemalloc's fork handlers out when heapkeeper's threads are parked
        # (allocator/quiet_fork.h), which under callgrind depends on how the live-stats thread was
        # scheduled: a run without that thread (HEAPKEEPER_STATS=0) makes it quiet every time, and
        # the one object only jemalloc's handlers run is added below, so that both kinds of fork are
        # placed whatever the machine's load (the witness object ran at one check in three under a
        # CPU hog, and the check failed).
        forking = os.path.join(work, "forking")
        with open(forking + ".c", "w") as source:
            source.write("#include <stdlib.h>\n#include <sys/wait.h>\n#include <unistd.h>\n"
                         "int main(void) { pid_t p = fork(); if (p == 0) { execl(\"/bin/true\", \"true\", (char*)0);"
                         " _exit(1); } free(malloc(10)); waitpid(p, 0, 0); return 0; }\n")
        subprocess.run(["cc", "-O2", "-o", forking, forking + ".c"], check=True)
        for command in (["/bin/true"], [one_allocation], [forking]) * 2:
            run_traced(library, command, work)
        run_traced(library, [forking], work, settings={"HEAPKEEPER_STATS": "0"})
        for command in (["/bin/true"], [one_allocation]) * 2:
            run_traced(library, command, reporting, report=os.path.join(reporting, "report.json"))
        ran = names_seen(work) | FULL_FORK_ONLY
        reporting_only = names_seen(reporting) - ran
    return ran, reporting_only


def own_section_lines(at, ran):
    """The input-section lines of the library's own functions (jemalloc's aside) among `ran`."""
    # Every name of the code that ran: the link folds identical functions (template instances of
    # the same code), whose one section is named after any of them, not always the one callgrind saw.
    ran_code = {name for names_here in at.values() if ran.intersection(names_here) for name in names_here}
    names = set()
    for name in ran_code:
        if name.startswith("je_"):
            continue
        # Without the suffixes of GCC's clones (".lto_priv.0", ".constprop.1", ".part.0", ".isra.0"),
        # which change from one build to the next: the section is matched as NAME or NAME.*.
        name = re.sub(r"(\.(lto_priv|constprop|part|isra|cold)(\.\d+)?)+$", "", name)
        names.add(name)
        # A complete-object constructor or destructor is an alias of the base one, whose section it is.
        names.add(re.sub(r"C1E", "C2E", name, count=1))
        names.add(re.sub(r"D1Ev", "D2Ev", name, count=1))
    return [f"    *(.text.{name} .text.{name}.*)" for name in sorted(names)]


def section_lines(library, ran, reporting_only):
    """The linker script's input-section lines for the functions in `ran`: the jemalloc objects laid out
    from a window boundary, heapkeeper's functions, the jemalloc objects run only near their start;
    then the functions only a process writing a report runs (`reporting_only`), past every window
    the others map. (jemalloc objects run only for a report stay where they are: moving them would
    move the others' windows.)"""
    at = {}
    for _, name, address, _ in functions_defined(library):
        at.setdefault(address, []).append(name)
    own = own_section_lines(at, ran)
    placed = set(own)
    reporting = [line for line in own_section_lines(at, reporting_only) if line not in placed]
    jemalloc_objects = jemalloc_objects_run(os.path.join(os.path.dirname(library), "libheapkeeper_jemalloc.a"), ran)
    # Their .text only: .text.unlikely holds the code GCC judged cold (the statistics printer).
    before, after = jemalloc_layout(os.path.join(os.path.dirname(library), "libheapkeeper_jemalloc.a"),
                                    jemalloc_objects, ran, section_start(library))
    return before, own, after, reporting


def main():
    arguments = sys.argv[1:]
    check = None
    if len(arguments) == 3 and arguments[0] == "--check":
        check = arguments[1]
        arguments = arguments[2:]
    if len(arguments) != 1:
        sys.exit(__doc__)
    library = os.path.realpath(arguments[0])
    ran, reporting_only = functions_run(library)
    wanted = section_lines(library, ran, reporting_only)
    if check is not None:
        wanted = [line for part in wanted for line in part if not line.strip().startswith(".")]
        # Every function that ran must be placed by the script; a script that places more (a
        # function that ran when it was written and no longer does) only costs that function's bytes.
        present = {line.strip() for line in open(check)}
        missing = [line.strip() for line in wanted if line.strip() not in present]
        if missing:
            sys.stderr.write(f"{check} is out of date: {len(missing)} function(s) or jemalloc object(s) that a short "
                             "traced process runs lie outside .text.heapkeeper_start, each costing every traced process "
                             "a 64 KiB code window; regenerate it with scripts/start_path_sections.py LIBRARY:\n")
            for line in missing:
                sys.stderr.write(f"  {line}\n")
            sys.exit(1)
        faults = layout_faults(library, ran)
        if faults:
            sys.stderr.write(f"{check} no longer lays the start path out as written (a window lost each); "
                             "regenerate it with scripts/start_path_sections.py LIBRARY:\n")
            for fault in faults:
                sys.stderr.write(f"  {fault}\n")
            sys.exit(1)
        print(f"{check} places all {len(wanted)} sections that /bin/true, one allocation and a fork run "
              "(with and without a report), window by window")
        return
    before, own, after, reporting = wanted
    # The functions the script placed before are kept: some run only when a thread wins a race
    # (the live-stats thread against exit), and a run that did not see them must not drop them for
    # the check's run to find. A name no longer in the library costs nothing.
    previous = os.path.join(REPOSITORY, "preload", "start_path.ld")
    if os.path.exists(previous):
        kept = [line.rstrip("\n") for line in open(previous) if line.strip().startswith("*(.text.")]
        reporting_lines = set(reporting)
        own = sorted(set(own) | {line for line in kept
                                 if not line.strip().startswith("*(.text.startup") and line not in reporting_lines})
        placed = set(own)
        reporting = [line for line in reporting if line not in placed]
    lines = ["SECTIONS", "{", "  .text.heapkeeper_start :", "  {"] + before
    lines += ["    *(.text.startup .text.startup.*)",
              "    *symbol_lookup_entry.S.o(.text)",
              # GCC's frame_dummy and __do_global_dtors_aux, which run at load and at exit.
              "    *crtbeginS.o(.text)",
              # The static parts of the C library (atexit, pthread_atfork: start-up registers its
              # handlers with them) and libgcc's population count, which heapkeeper's start-up calls
              # and which would otherwise sit alone in the text's last 64 KiB window.
              "    *libc_nonshared.a:*(.text)",
              "    *libgcc.a:_popcount*.o(.text)"]
    lines += own + after
    if reporting:
        lines += ["    /* Run only by a process that writes a report: past the windows the others map. */"]
        lines += reporting
    lines += ["  }", "}", "INSERT BEFORE .text;"]
    with open(previous, "w") as script:
        script.write(HEADER + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
