#!/usr/bin/env bash
# Real Perl under heapkeeper: workload.pl (hashes, regexes, sorting, objects, closures and a lot of
# transient allocation) must print the same and exit the same as in a plain run.
source "$(dirname "$0")/lib.sh"

hk_require perl
workload=$(dirname "$(readlink -f "$0")")/workload.pl
export PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0 LC_ALL=C

run_perl() {
  local mode=$1
  hk_exec "$mode" perl "$workload"
}

hk_compare perl run_perl -- launcher preload
hk_finish
