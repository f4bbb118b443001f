#!/usr/bin/env bash
# Frames of libraries the program closed with dlclose (tests/programs/unloaded_library.c and its
# plugins alpha and bravo, one source built under two names, so with the same layout). Each part
# fails on a heapkeeper that names such frames "?? ??" or by whatever is mapped at their addresses:
#   closed   alpha loses 3 x 100 bytes and keeps 2 x 48, then is closed: the exit report (text and
#            JSON) names alpha's functions and unloaded_plugin.c:LINE, with alpha's path, offset
#            and build-id. Compared with a plain run.
#   deleted  a copy of alpha, deleted from disk after dlopen, then closed: module and offset, with
#            the copy's path and alpha's build-id, no function; and a copy replaced on disk by bravo
#            (another build-id) must not be named with bravo's symbols.
#   deleted_loaded  the same copy deleted but still loaded at exit: its frames named from the
#            module's dynamic symbols, which the library reads for the binary (no file to read).
#   reused   alpha closed, then bravo loaded at alpha's addresses, making identical stacks (same
#            return addresses): alpha's blocks are alpha's, bravo's are bravo's (3 x 100 and 5 x 200
#            leaked; 2 x 48 and 4 x 64 kept), with bravo left loaded and with bravo closed too.
#   live     the reused program held before exit: `heapkeeper stats --json` (the site table of the
#            live-stats segment) and `heapkeeper report --json` name both plugins' functions.
source "$(dirname "$0")/lib.sh"

part=${1:?usage: unloaded_library.sh closed|deleted|deleted_loaded|reused|live}
program=$(hk_program unloaded_library)
: "${HK_UNLOADED_ALPHA:?HK_UNLOADED_ALPHA must name the alpha plugin}"
: "${HK_UNLOADED_BRAVO:?HK_UNLOADED_BRAVO must name the bravo plugin}"
alpha=$(realpath "$HK_UNLOADED_ALPHA")
bravo=$(realpath "$HK_UNLOADED_BRAVO")
plugin_source=$HK_SOURCE_DIR/tests/programs/unloaded_plugin.c
# The line of the plugin's malloc call, worked out from the source, not from heapkeeper's output.
malloc_line=$(grep -n 'void\* block = malloc(size);' "$plugin_source" | cut -d: -f1)

# The GNU build-id of an ELF file, read from its notes with readelf when installed, else Python.
build_id_of() {
  if command -v readelf >/dev/null 2>&1; then
    readelf -n "$1" | sed -n 's/^ *Build ID: *//p'
    return
  fi
  "$HK_CHECK_PYTHON" - "$1" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
phoff, = struct.unpack_from("<Q", data, 0x20)
phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
for i in range(phnum):
    p_type, _, p_offset, _, _, p_filesz, _, p_align = struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize)
    if p_type != 4:  # PT_NOTE
        continue
    pos, end, align = p_offset, p_offset + p_filesz, 8 if p_align == 8 else 4
    while pos + 12 <= end:
        namesz, descsz, kind = struct.unpack_from("<III", data, pos)
        name_at = pos + 12
        desc_at = name_at + (namesz + align - 1) // align * align
        if kind == 3 and data[name_at:name_at + 4] == b"GNU\0":
            print(data[desc_at:desc_at + descsz].hex())
            sys.exit(0)
        pos = desc_at + (descsz + align - 1) // align * align
PY
}
alpha_id=$(build_id_of "$alpha")
bravo_id=$(build_id_of "$bravo")
if [[ -z $alpha_id || -z $bravo_id || $alpha_id == "$bravo_id" ]]; then
  hk_fail "the plugins need distinct build-ids (alpha '$alpha_id', bravo '$bravo_id')"
  hk_finish
fi

# The plugins must each load where the first one did (the program exits with status 4 otherwise:
# the run would prove nothing). The dynamic loader decides that, and a mapping made between a
# dlclose and the next dlopen, heapkeeper's own at whatever moment the machine's load puts it, can
# take the place (once in a full ctest): such a run is made again, at most three times in all, its
# reports discarded.
# plugin_moved ERR: the program's stderr says a plugin did not load where the first one had.
plugin_moved() { grep -q 'not where the first plugin was' "$1"; }

run_plugins() {
  local mode=$1 attempt status out err
  shift
  out=$(mktemp -p "$HK_WORK") err=$(mktemp -p "$HK_WORK")
  for attempt in 1 2 3; do
    status=0
    hk_exec "$mode" "$program" "$@" >"$out" 2>"$err" || status=$?
    if [[ $status != 4 || $attempt == 3 ]] || ! plugin_moved "$err"; then break; fi
    if [[ -n ${HEAPKEEPER_REPORT:-} ]]; then rm -f "$(dirname "$HEAPKEEPER_REPORT")"/r.*.json; fi
  done
  cat "$out"
  cat "$err" >&2
  rm -f "$out" "$err"
  return "$status"
}

# check_sites REPORT SECTION EXPECTATIONS-JSON: every expectation is one site (leak group or live
# site) of REPORT[SECTION], found by its blocks and bytes, whose top two frames are as expected:
#   {"blocks": N, "bytes": N, "kind": "direct"?, "module": PATH, "build_id": HEX, "unloaded": BOOL,
#    "functions": [TOP, SECOND] or null (no function known), "line": N or null}
check_sites() {
  local report=$1 section=$2 expectations=$3 message
  if message=$("$HK_CHECK_PYTHON" - "$report" "$section" "$expectations" "$malloc_line" 2>&1 <<'PY'
import json, sys
report_path, section, expectations, malloc_line = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
sites = json.load(open(report_path))[section]
problems = []
def describe(site):
    return {k: site.get(k) for k in ("blocks", "bytes", "kind")} | {
        "top": [{k: f.get(k) for k in ("function", "module", "file", "line", "build_id", "unloaded")} for f in site["stack"][:2]]}
for want in expectations:
    found = [s for s in sites if s.get("blocks") == want["blocks"] and s.get("bytes") == want["bytes"]
             and len(s.get("stack", [])) >= 2 and s["stack"][0].get("module") == want["module"]]
    if len(found) != 1:
        problems.append(f"{len(found)} {section} of {want['blocks']} block(s), {want['bytes']} bytes in "
                        f"{want['module']}; sites in that module or with '??' on top: "
                        f"{[describe(s) for s in sites if s.get('stack') and s['stack'][0].get('module') in (want['module'], '??')]}")
        continue
    site = found[0]
    if "kind" in want and site.get("kind") != want["kind"]:
        problems.append(f"{want['module']}: kind {site.get('kind')}, expected {want['kind']}")
    for depth, frame in enumerate(site["stack"][:2]):
        where = f"{section} {want['blocks']} x {want['bytes']} frame #{depth}"
        if frame.get("module") != want["module"]:
            problems.append(f"{where}: module {frame.get('module')}, expected {want['module']}")
        if frame.get("build_id") != want["build_id"]:
            problems.append(f"{where}: build_id {frame.get('build_id')}, expected {want['build_id']}")
        if bool(frame.get("unloaded")) != want["unloaded"]:
            problems.append(f"{where}: unloaded {frame.get('unloaded')}, expected {want['unloaded']}")
        if not isinstance(frame.get("offset"), int) or frame["offset"] <= 0:
            problems.append(f"{where}: offset {frame.get('offset')}")
        functions = want["functions"]
        if functions is None:
            if frame.get("function") != "??" or "file" in frame:
                problems.append(f"{where}: named {frame.get('function')} {frame.get('file')}, expected neither "
                                "(the file on disk is not the library that was loaded)")
        elif frame.get("function") != functions[depth]:
            problems.append(f"{where}: function {frame.get('function')}, expected {functions[depth]}")
        elif not str(frame.get("file", "")).endswith("unloaded_plugin.c"):
            problems.append(f"{where}: file {frame.get('file')}, expected unloaded_plugin.c")
    if want["functions"] is not None and site["stack"][0].get("line") != malloc_line:
        problems.append(f"{section} {want['blocks']} x {want['bytes']}: top line {site['stack'][0].get('line')}, "
                        f"expected {malloc_line} (the plugin's malloc call)")
if problems:
    sys.exit("\n".join(problems))
PY
  ); then
    return 0
  fi
  hk_fail "$report: $message"
  return 1
}

# expect BLOCKS BYTES PATH BUILD_ID UNLOADED(true|false) PLUGIN-NAME(or "") CALLER: one expectation
# for check_sites, as JSON; the top two functions are PLUGIN-NAME_make_block and PLUGIN-NAME_CALLER.
expect() {
  local functions=null
  [[ -n $6 ]] && functions="[\"${6}_make_block\", \"${6}_$7\"]"
  printf '{"blocks": %s, "bytes": %s, "module": "%s", "build_id": "%s", "unloaded": %s, "functions": %s}' \
    "$1" "$2" "$3" "$4" "$5" "$functions"
}

report_of() { find "$HK_WORK/$1.launcher/reports" -name 'r.*.json' | head -1; }

case $part in
  closed)
    hk_compare closed run_plugins "$alpha:alpha" -- launcher preload
    report=$(report_of closed)
    if [[ -n $report ]] &&
       check_sites "$report" leaks "[$(expect 3 300 "$alpha" "$alpha_id" true alpha lose_blocks)]" &&
       check_sites "$report" live_sites "[$(expect 2 96 "$alpha" "$alpha_id" true alpha keep_blocks)]"; then
      hk_pass "closed: the JSON report names alpha's functions and unloaded_plugin.c:$malloc_line, path, offset, build-id"
    fi
    # The text report on stderr, in LeakSanitizer's format.
    pattern="#0 0x[0-9a-f]+ in alpha_make_block $alpha\+0x[0-9a-f]+ .*unloaded_plugin\.c:$malloc_line \(unloaded\)$"
    if grep -Eq "$pattern" "$HK_WORK/closed.launcher/err"; then
      hk_pass "closed: the leak report on stderr names alpha_make_block at unloaded_plugin.c:$malloc_line"
    else
      hk_fail "closed: no line matching '$pattern' on stderr:"
      grep -A3 'Direct leak' "$HK_WORK/closed.launcher/err" >&2 || true
    fi
    ;;
  deleted)
    # Copies, so the build tree's plugins stay; the program deletes (or replaces) its copy.
    mkdir -p "$HK_WORK/copies"
    doomed=$HK_WORK/copies/libhk_doomed.so
    run_deleted() {
      local mode=$1
      cp "$alpha" "$doomed"
      hk_exec "$mode" "$program" --delete "$doomed:alpha"
    }
    hk_compare deleted run_deleted -- launcher
    report=$(report_of deleted)
    [[ -n $report ]] &&
      check_sites "$report" leaks "[$(expect 3 300 "$doomed" "$alpha_id" true "" "")]" &&
      check_sites "$report" live_sites "[$(expect 2 96 "$doomed" "$alpha_id" true "" "")]" &&
      hk_pass "deleted: module $doomed + offset, alpha's build-id, no function"
    pattern="#0 0x[0-9a-f]+ in \?\? $doomed\+0x[0-9a-f]+ \(unloaded, BuildId: $alpha_id\)$"
    if grep -Eq "$pattern" "$HK_WORK/deleted.launcher/err"; then
      hk_pass "deleted: the leak report on stderr gives module+offset and the build-id"
    else
      hk_fail "deleted: no line matching '$pattern' on stderr:"
      grep -A3 'Direct leak' "$HK_WORK/deleted.launcher/err" >&2 || true
    fi
    # The same offset as alpha's own frame: the copy is byte for byte alpha.
    top_offset=$("$HK_CHECK_PYTHON" -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(*{l["stack"][0]["offset"] for l in r["leaks"] if l["stack"][0]["module"] == sys.argv[2]})' "$report" "$doomed")
    expected_offset=$("$HK_CHECK_PYTHON" - "$alpha" <<'PY'
# alpha_make_block's address range in the file (its symbol table), to check the offset against.
import struct, sys
data = open(sys.argv[1], "rb").read()
shoff, = struct.unpack_from("<Q", data, 0x28)
shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
for name, kind, _, _, offset, size, link, _, _, entsize in sections:
    if kind != 2:  # SHT_SYMTAB
        continue
    strings = sections[link][4]
    for at in range(offset, offset + size, entsize):
        st_name, _, _, _, value, length = struct.unpack_from("<IBBHQQ", data, at)
        end = data.index(b"\0", strings + st_name)
        if data[strings + st_name:end] == b"alpha_make_block":
            print(value, value + length)
PY
)
    read -r low high <<<"$expected_offset"
    if [[ -n ${low:-} && $top_offset =~ ^[0-9]+$ ]] && ((top_offset > low && top_offset <= high)); then
      hk_pass "deleted: the top frame's offset $top_offset lies in alpha_make_block ($low..$high) of the file"
    else
      hk_fail "deleted: top frame offset '$top_offset' is not inside alpha_make_block ('$expected_offset')"
    fi

    # Replaced on disk by bravo (same path, another build-id): bravo's symbols must not be used.
    replaced=$HK_WORK/copies/libhk_replaced.so
    run_replaced() {
      local mode=$1
      cp "$alpha" "$replaced"
      cp "$bravo" "$replaced.bravo"
      hk_exec "$mode" "$program" --replace-with "$replaced.bravo" "$replaced:alpha"
    }
    hk_compare replaced run_replaced -- launcher
    report=$(report_of replaced)
    [[ -n $report ]] &&
      check_sites "$report" leaks "[$(expect 3 300 "$replaced" "$alpha_id" true "" "")]" &&
      hk_pass "deleted: a file replaced by another build gives module+offset, not the new file's names"
    ;;
  reused)
    for closing in keep-last close-all; do
      flags=()
      bravo_unloaded=true
      if [[ $closing == keep-last ]]; then flags=(--keep-last); bravo_unloaded=false; fi
      hk_compare "reused_$closing" run_plugins "${flags[@]}" "$alpha:alpha" "$bravo:bravo" -- launcher
      report=$(report_of "reused_$closing")
      [[ -n $report ]] || continue
      check_sites "$report" leaks "[$(expect 3 300 "$alpha" "$alpha_id" true alpha lose_blocks),
        $(expect 5 1000 "$bravo" "$bravo_id" "$bravo_unloaded" bravo lose_blocks)]" &&
        check_sites "$report" live_sites "[$(expect 2 96 "$alpha" "$alpha_id" true alpha keep_blocks),
          $(expect 4 256 "$bravo" "$bravo_id" "$bravo_unloaded" bravo keep_blocks)]" &&
        hk_pass "reused ($closing): alpha's and bravo's blocks are each named by their own library"
      # Otherwise this part would prove nothing: both plugins' stacks have the same addresses.
      hk_json_check "$report" \
        "len({tuple(f['address'] for f in l['stack']) for l in r['leaks'] if l['stack'][0]['function'].endswith('_make_block')}) == 1" \
        "alpha's and bravo's leaks have identical stacks (the same return addresses)" &&
        hk_pass "reused ($closing): the two plugins' leaked blocks have identical stacks"
    done
    ;;
  reloaded)
    # alpha loaded, used and closed three times at the same place: one library record, and one
    # site for the blocks of every load that was closed since (3 + 5 + 7 leaked blocks of 100, 200
    # and 300 bytes; 2 + 4 + 6 kept of 48, 64 and 80), not one per reload. A load still mapped at
    # exit is named by what is mapped then: its own site.
    hk_compare reloaded run_plugins "$alpha:alpha" "$alpha:alpha" "$alpha:alpha" -- launcher
    report=$(report_of reloaded)
    if [[ -n $report ]] &&
       check_sites "$report" leaks "[$(expect 15 3400 "$alpha" "$alpha_id" true alpha lose_blocks)]" &&
       check_sites "$report" live_sites "[$(expect 12 832 "$alpha" "$alpha_id" true alpha keep_blocks)]"; then
      hk_pass "reloaded: three loads of alpha, closed, are one leak group and one live site"
    fi
    hk_compare reloaded_keep_last run_plugins --keep-last "$alpha:alpha" "$alpha:alpha" "$alpha:alpha" -- launcher
    report=$(report_of reloaded_keep_last)
    if [[ -n $report ]] &&
       check_sites "$report" leaks "[$(expect 8 1300 "$alpha" "$alpha_id" true alpha lose_blocks),
         $(expect 7 2100 "$alpha" "$alpha_id" false alpha lose_blocks)]"; then
      hk_pass "reloaded (keep-last): the closed loads are one group, the loaded one another"
    fi
    ;;
  deleted_loaded)
    # A copy of alpha deleted from disk but still loaded at exit: the binary has no file to read,
    # so the library names the frames from the module's dynamic symbols (what dladdr sees).
    mkdir -p "$HK_WORK/copies"
    doomed=$HK_WORK/copies/libhk_doomed.so
    run_deleted_loaded() {
      cp "$alpha" "$doomed"
      hk_exec "$1" "$program" --delete --keep-last "$doomed:alpha"
    }
    hk_compare deleted_loaded run_deleted_loaded -- launcher
    report=$(report_of deleted_loaded)
    if [[ -n $report ]] && "$HK_CHECK_PYTHON" - "$report" "$doomed (deleted)" <<'PY'; then
import json, sys
report, module = json.load(open(sys.argv[1])), sys.argv[2]
frames = [f for l in report["leaks"] for f in l["stack"] if f["module"] == module]
names = [f["function"] for f in frames]
sys.exit(0 if names[:2] == ["alpha_make_block", "alpha_lose_blocks"] else f"frames of {module}: {names}")
PY
      hk_pass "deleted, still loaded: the leak's frames in the deleted copy are named alpha_make_block, alpha_lose_blocks"
    fi
    if grep -Eq "#0 0x[0-9a-f]+ in alpha_make_block $doomed \(deleted\)\+0x[0-9a-f]+" "$HK_WORK/deleted_loaded.launcher/err"; then
      hk_pass "deleted, still loaded: the text report names alpha_make_block"
    else
      hk_fail "deleted, still loaded: the text report does not name alpha_make_block: $(grep -A3 'Direct leak' "$HK_WORK/deleted_loaded.launcher/err")"
    fi
    ;;
  live)
    # `heapkeeper run` execs the program, so the job's pid is the tracked process. Started again
    # (three times in all) when bravo did not load where alpha had been: see run_plugins.
    for attempt in 1 2 3; do
      "$HK_LAUNCHER" run -- "$program" --keep-last --hold "$HK_WORK/pid" "$alpha:alpha" "$bravo:bravo" \
        >"$HK_WORK/live.out" 2>"$HK_WORK/live.err" &
      job=$!
      for ((i = 0; i < 300; ++i)); do
        [[ -s $HK_WORK/pid ]] && break
        kill -0 "$job" 2>/dev/null || break
        sleep 0.02
      done
      [[ -s $HK_WORK/pid ]] && break
      wait "$job" 2>/dev/null || true
      plugin_moved "$HK_WORK/live.err" || break
    done
    if [[ ! -s $HK_WORK/pid ]]; then
      hk_fail "live: the program did not get ready: $(cat "$HK_WORK/live.err")"
      kill -9 "$job" 2>/dev/null || true
      hk_finish
    fi
    pid=$(cat "$HK_WORK/pid")
    # The live-stats segment: its site table is symbolized inside the process. Sites are published
    # every half second, once a reader has looked at the segment.
    for ((i = 0; i < 60; ++i)); do
      "$HK_LAUNCHER" stats "$pid" --json >"$HK_WORK/stats.json" 2>"$HK_WORK/stats.err" || true
      grep -q alpha_make_block "$HK_WORK/stats.json" && grep -q bravo_make_block "$HK_WORK/stats.json" && break
      sleep 0.1
    done
    # The segment keeps module paths to its fixed width: compare with what fits.
    if message=$("$HK_CHECK_PYTHON" - "$HK_WORK/stats.json" "$alpha" "$bravo" 2>&1 <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
alpha, bravo = sys.argv[2], sys.argv[3]
problems = []
# Every block is live until the program exits, the lost ones too.
for name, path, caller, blocks, size in (("alpha", alpha, "keep_blocks", 2, 96), ("alpha", alpha, "lose_blocks", 3, 300),
                                         ("bravo", bravo, "keep_blocks", 4, 256), ("bravo", bravo, "lose_blocks", 5, 1000)):
    sites = [s for s in doc["sites"] if len(s["stack"]) > 1 and s["stack"][0]["function"] == f"{name}_make_block"
             and s["stack"][1]["function"] == f"{name}_{caller}"]
    if len(sites) != 1:
        problems.append(f"{len(sites)} sites of {name}_{caller}; sites: "
                        f"{[(s['live_blocks'], [f['function'] for f in s['stack'][:2]]) for s in doc['sites']]}")
        continue
    site, top = sites[0], sites[0]["stack"][0]
    if site["live_blocks"] != blocks or site["live_bytes"] != size:
        problems.append(f"{name}_{caller}: {site['live_blocks']} blocks, {site['live_bytes']} bytes; expected {blocks}, {size}")
    if not top["module"] or not path.startswith(top["module"]):
        problems.append(f"{name}_{caller}: module {top['module']}, expected {path}")
if problems:
    sys.exit("\n".join(problems))
PY
    ); then
      hk_pass "live: heapkeeper stats --json names alpha's (unloaded) and bravo's sites apart"
    else
      hk_fail "live: stats --json: $message"
    fi
    "$HK_LAUNCHER" report "$pid" --json >"$HK_WORK/report.json" 2>"$HK_WORK/report.err" || true
    if [[ -s $HK_WORK/report.json ]] &&
       check_sites "$HK_WORK/report.json" leaks "[$(expect 3 300 "$alpha" "$alpha_id" true alpha lose_blocks),
         $(expect 5 1000 "$bravo" "$bravo_id" false bravo lose_blocks)]"; then
      hk_pass "live: heapkeeper report --json names both plugins' leaks, with path and build-id"
    elif [[ ! -s $HK_WORK/report.json ]]; then
      hk_fail "live: heapkeeper report --json printed nothing: $(cat "$HK_WORK/report.err")"
    fi
    kill -USR1 "$pid" 2>/dev/null || true
    status=0
    hk_wait "$job" || status=$?
    if ((status != 0)); then
      hk_fail "live: the program exited with status $status: $(tail -5 "$HK_WORK/live.err")"
    fi
    ;;
  *)
    echo "unknown part $part" >&2
    exit 2
    ;;
esac
hk_finish
