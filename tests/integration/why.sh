#!/usr/bin/env bash
# `heapkeeper why` and retained sizes on a heap of known shape (tests/programs/retainer_graph.c):
#
#   global global_tree -> A -> B -> S -> P      A, B, C, S: 64-byte nodes (make_tree_node; B and C
#                          A -> C -> S          from one call site), P: 1000 bytes (make_payload)
#   thread "holder", on its stack: L3 -> L2 -> L1 (64-byte make_list_node blocks, one site)
#   a 77-byte block nothing points to (make_lost)
#
# Worked out by hand: A retains A, B, C, S, P = 1256 bytes; S retains 1064; B's and C's site
# retains 1192 (together they hold S); the list's site 192. Retainer paths: P has one (global
# global_tree -> A -> B or C -> S -> P); S two, through B and through C; L1..L3 are held from the
# holder thread's stack, in the frame of the function holder. The lost block is leaked: `why` says so.
source "$(dirname "$0")/lib.sh"

program=$(hk_program retainer_graph)
hk_start_ready graph "$program" || hk_finish
pid=$HK_READY_PID
trap 'kill "$pid" 2>/dev/null || true; hk_cleanup' EXIT
shared=$(sed -n 's/.*S=\(0x[0-9a-f]*\).*/\1/p' "$HK_WORK/graph.out")
lost=$(sed -n 's/.*lost=\(0x[0-9a-f]*\).*/\1/p' "$HK_WORK/graph.out")

# why_json NAME ARGS...: the answer to `heapkeeper why PID ARGS... --json` in $HK_WORK/NAME.json.
why_json() {
  local name=$1
  shift
  if ! "$HK_LAUNCHER" why "$pid" "$@" --json >"$HK_WORK/$name.json" 2>"$HK_WORK/$name.err"; then
    hk_fail "why $*: $(cat "$HK_WORK/$name.err")"
    return 1
  fi
}

# check NAME DESCRIPTION PYTHON: runs the Python check on $HK_WORK/NAME.json (as `doc`).
check() {
  local name=$1 what=$2 code=$3 problem
  if problem=$("$HK_CHECK_PYTHON" -c "
import json, sys
doc = json.load(open(sys.argv[1]))
def sites(path): return [step['site']['function'] for step in path['chain']]
def sizes(path): return [step['size'] for step in path['chain']]
$code" "$HK_WORK/$name.json" 2>&1); then
    hk_pass "$what"
  else
    hk_fail "$what: $problem ($(head -c 600 "$HK_WORK/$name.json"))"
  fi
}

why_json payload make_payload &&
  check payload "why make_payload: 1000 B, retains 1000 B, one path from global global_tree through A, B or C, S" "
t = doc['target']
assert (t['blocks'], t['bytes'], t['retained_bytes']) == (1, 1000, 1000), t
assert len(doc['paths']) == 1, doc['paths']
p = doc['paths'][0]
assert p['root']['kind'] == 'global' and p['root']['name'] == 'global_tree', p['root']
assert p['root']['module'].endswith('hk_prog_retainer_graph'), p['root']
assert sites(p) == ['make_tree_node'] * 3 + ['make_payload'], sites(p)
assert sizes(p) == [64, 64, 64, 1000], sizes(p)
assert p['chain'][2]['address'] == '$shared', p['chain'][2]
"

why_json shared "$shared" --paths 3 &&
  check shared "why S (by address): retains 1064 B, two paths, through B and through C" "
t = doc['target']
assert (t['blocks'], t['bytes'], t['retained_bytes']) == (1, 64, 1064), t
paths = doc['paths']
assert len(paths) == 2, paths
for p in paths:
    assert p['root']['name'] == 'global_tree' and sizes(p) == [64, 64, 64], p
    assert p['chain'][-1]['address'] == '$shared', p
assert paths[0]['chain'][0]['address'] == paths[1]['chain'][0]['address'], 'both start at A'
assert paths[0]['chain'][1]['address'] != paths[1]['chain'][1]['address'], 'one through B, one through C'
"

why_json interior "$(printf '0x%x' $((shared + 24)))" --paths 1 &&
  check interior "an interior address names its block" "
assert doc['target']['bytes'] == 64 and doc['paths'][0]['chain'][-1]['address'] == '$shared', doc
"

why_json tree make_tree_node &&
  check tree "why make_tree_node: 4 blocks, 256 B, retaining 1256 B" "
t = doc['target']
assert (t['blocks'], t['bytes'], t['retained_bytes']) == (4, 256, 1256), t
assert len(doc['paths'][0]['chain']) == 1, 'the nearest block (A) first'
"

why_json list make_list_node --paths 3 &&
  check list "why make_list_node: 3 blocks held from the stack of the holder thread, in holder's frame, nearest first" "
t = doc['target']
assert (t['blocks'], t['bytes'], t['retained_bytes']) == (3, 192, 192), t
paths = doc['paths']
assert [len(p['chain']) for p in paths] == [1, 2, 3], [sizes(p) for p in paths]
for p in paths:
    r = p['root']
    assert r['kind'] == 'stack' and r['name'].endswith(' (holder)'), r
    assert r['function'] == 'holder' and r['module'].endswith('hk_prog_retainer_graph'), r
    assert sites(p) == ['make_list_node'] * len(p['chain']), sites(p)
"
if "$HK_LAUNCHER" why "$pid" make_list_node --paths 1 >"$HK_WORK/list.txt" 2>&1 &&
   grep -q "#1 stack of thread [0-9]* (holder), in holder's frame, [0-9]* bytes above its stack pointer" "$HK_WORK/list.txt"; then
  hk_pass "why (text) names the thread and the function whose frame holds the list"
else
  hk_fail "why make_list_node (text): $(cat "$HK_WORK/list.txt")"
fi

# Text output: the root named as a person would, each block with its size and site.
if "$HK_LAUNCHER" why "$pid" make_payload >"$HK_WORK/text.txt" 2>&1 &&
   grep -q "global global_tree in .*hk_prog_retainer_graph" "$HK_WORK/text.txt" &&
   grep -q "1000 B  make_payload .*retainer_graph.c:[1-9]" "$HK_WORK/text.txt"; then
  hk_pass "why (text) names the global and the sites"
else
  hk_fail "why (text): $(cat "$HK_WORK/text.txt")"
fi

# One-line refusals, status 1.
for case in "lost:$lost:leaked" "nosuch:no_such_function:no reachable block" "nowhere:0x10:in no live block"; do
  IFS=: read -r name target expected <<<"$case"
  status=0
  "$HK_LAUNCHER" why "$pid" "$target" >"$HK_WORK/$name.out" 2>"$HK_WORK/$name.err" || status=$?
  if ((status == 1)) && [[ $(wc -l <"$HK_WORK/$name.err") == 1 ]] && grep -q "$expected" "$HK_WORK/$name.err"; then
    hk_pass "why $target: one line, status 1 ($(cat "$HK_WORK/$name.err"))"
  else
    hk_fail "why $target: status $status: $(cat "$HK_WORK/$name.err")"
  fi
done
status=0
"$HK_LAUNCHER" why "$pid" 0xzz >"$HK_WORK/bad.out" 2>"$HK_WORK/bad.err" || status=$?
if ((status != 0)) && grep -q "not an address" "$HK_WORK/bad.err"; then
  hk_pass "a malformed address is refused in one line"
else
  hk_fail "why 0xzz: status $status: $(cat "$HK_WORK/bad.err")"
fi

# The process answered with raw facts, named by the binary: `why` loaded no symbolizer into it.
if grep -E "libdw|libelf" "/proc/$pid/maps" >"$HK_WORK/maps.txt"; then
  hk_fail "why loaded a symbolizer into the traced process: $(head -3 "$HK_WORK/maps.txt")"
else
  hk_pass "after every why, neither libdw nor libelf is mapped in the traced process"
fi

# Retained sizes in the report: per site (one walk each) and the top blocks.
if "$HK_LAUNCHER" report "$pid" --json >"$HK_WORK/report.json" 2>"$HK_WORK/report.err"; then
  check report "report --json: retained bytes per site and per block, exact" "
r = doc['scan']['retained']
assert r['known'], r
def site(function, blocks):
    found = [s for s in r['sites'] if s['stack'] and s['stack'][0]['function'] == function and s['blocks'] == blocks]
    assert len(found) == 1, (function, blocks, [(s['stack'][0]['function'] if s['stack'] else '?', s['blocks']) for s in r['sites']])
    return found[0]
assert site('make_payload', 1)['retained_bytes'] == 1000
assert site('make_list_node', 3)['retained_bytes'] == 192
two = site('make_tree_node', 2)
assert (two['bytes'], two['retained_bytes']) == (128, 1192), two
singles = sorted(s['retained_bytes'] for s in r['sites'] if s['stack'] and s['stack'][0]['function'] == 'make_tree_node' and s['blocks'] == 1)
assert singles == [1064, 1256], singles
top = [(b['bytes'], b['retained_bytes']) for b in r['top_blocks'] if b['stack'][0]['function'] == 'make_tree_node']
assert top[:2] == [(64, 1256), (64, 1064)], top
"
else
  hk_fail "report --json: $(cat "$HK_WORK/report.err")"
fi

kill -TERM "$pid"
wait "$pid" || true
hk_finish
