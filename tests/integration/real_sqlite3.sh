#!/usr/bin/env bash
# Real SQLite under heapkeeper: the sqlite3 shell builds a database of ~50,000 rows in a file,
# indexes it and runs join, group-by and window queries (workload.sql); output and status must
# match a plain run, and the database files must check out the same.
source "$(dirname "$0")/lib.sh"

hk_require sqlite3
workload=$(dirname "$(readlink -f "$0")")/workload.sql

run_sqlite() {
  local mode=$1
  hk_step "$mode" sqlite3 -bail shop.db <"$workload"
  # A second process reads what the first wrote.
  hk_step "$mode" sqlite3 shop.db "SELECT count(*), sum(amount_cents) FROM orders; PRAGMA quick_check;"
}

hk_compare sqlite3 run_sqlite -- launcher preload
hk_finish
