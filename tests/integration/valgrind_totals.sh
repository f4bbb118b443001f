#!/usr/bin/env bash
# The README's claim that on real programs heapkeeper's leak totals at exit equal valgrind's
# "definitely lost" + "indirectly lost", checked on the programs it names: the same small
# workload runs under `heapkeeper run` and under `valgrind --leak-check=full`, and the leaked bytes
# and blocks of heapkeeper's exit report must equal valgrind's sums exactly.
#   valgrind_totals.sh perl   a perl one-liner that builds a hash of arrays (perl leaves its
#                             interpreter to the OS at exit: most blocks are valgrind's "possibly
#                             lost", reached only through interior pointers, which heapkeeper counts
#                             as references too, so they are in neither total)
#   valgrind_totals.sh git    `git prune` in a one-commit repository
# Both are deterministic (fixed hash seed, fixed configuration, identities and dates).
source "$(dirname "$0")/lib.sh"

program=${1:?usage: valgrind_totals.sh perl|git}
hk_require valgrind "$program"
HK_TIMEOUT=40  # valgrind is slow to start on a loaded machine; each run is well under that alone
export LC_ALL=C

case $program in
  perl)
    export PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0
    workload=(perl -e 'my %h = map { $_ => [$_, "v$_"] } 1 .. 200; print scalar(keys %h), "\n"')
    ;;
  git)
    export HOME=$HK_WORK/home GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
    export GIT_AUTHOR_NAME="Ada Tester" GIT_AUTHOR_EMAIL=ada@example.org GIT_AUTHOR_DATE="@1700000000 +0000"
    export GIT_COMMITTER_NAME="Bob Committer" GIT_COMMITTER_EMAIL=bob@example.org
    export GIT_COMMITTER_DATE="@1700000000 +0000"
    mkdir -p "$HOME"
    git init -q -b main "$HK_WORK/repo"
    (cd "$HK_WORK/repo" && echo content >file && git add file && git commit -q -m "one commit")
    cd "$HK_WORK/repo"
    workload=(git prune)
    ;;
  *)
    echo "valgrind_totals.sh: unknown program $program" >&2
    exit 2
    ;;
esac

# heapkeeper: the exit report of the program's own process (not of any child it may start).
status=0
HEAPKEEPER_REPORT=$HK_WORK/heapkeeper.%p.json hk_exec launcher "${workload[@]}" >"$HK_WORK/heapkeeper.out" \
  2>"$HK_WORK/heapkeeper.err" || status=$?
((status == 0)) || hk_fail "$program under heapkeeper exited with $status"
read -r hk_bytes hk_blocks < <("$HK_CHECK_PYTHON" - "$HK_WORK" "$program" <<'PY'
import glob, json, os, sys
work, program = sys.argv[1], sys.argv[2]
reports = [json.load(open(path)) for path in glob.glob(os.path.join(work, "heapkeeper.*.json"))]
mine = [r for r in reports if os.path.basename(r["command_line"][0]) == program]
if len(mine) != 1:
    sys.exit(f"expected one report of {program}, found {len(mine)} of {len(reports)}")
print(mine[0]["leaked_bytes"], mine[0]["leaked_blocks"])
PY
) || true

# valgrind: definitely + indirectly lost (absent lines mean 0).
status=0
hk_exec plain valgrind --leak-check=full --log-file="$HK_WORK/valgrind.log" "${workload[@]}" >"$HK_WORK/valgrind.out" \
  2>/dev/null || status=$?
((status == 0)) || hk_fail "$program under valgrind exited with $status"
valgrind_total() {  # KIND FIELD: FIELD 1 = bytes, 2 = blocks of "KIND lost: B bytes in N blocks"
  sed -n "s/.*$1 lost: \([0-9,]*\) bytes in \([0-9,]*\) blocks.*/\\$2/p" "$HK_WORK/valgrind.log" | tr -d , | head -1
}
vg_bytes=$(($(valgrind_total definitely 1) + $(valgrind_total indirectly 1) + 0))
vg_blocks=$(($(valgrind_total definitely 2) + $(valgrind_total indirectly 2) + 0))

if ! cmp -s "$HK_WORK/heapkeeper.out" "$HK_WORK/valgrind.out"; then
  hk_fail "$program printed different output under heapkeeper and valgrind"
fi
if [[ -z ${hk_bytes:-} ]]; then
  hk_fail "no heapkeeper report of $program"
elif ((hk_bytes == vg_bytes && hk_blocks == vg_blocks)); then
  hk_pass "$program: heapkeeper $hk_bytes bytes in $hk_blocks blocks = valgrind definitely + indirectly lost"
else
  hk_fail "$program: heapkeeper reports $hk_bytes bytes in $hk_blocks blocks leaked, valgrind" \
    "$vg_bytes bytes in $vg_blocks blocks definitely + indirectly lost (see $HK_WORK/valgrind.log)"
fi
hk_finish
