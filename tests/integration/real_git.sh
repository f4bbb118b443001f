#!/usr/bin/env bash
# Real git under heapkeeper: a repository built from scratch with several commits, a branch, a
# merge, logs, blame, grep and gc (which runs pack-objects and friends as child processes, all
# traced). Author, committer and dates are fixed, so the commit hashes are deterministic and must
# be identical with and without heapkeeper (`git log --format=%H` is part of the output).
source "$(dirname "$0")/lib.sh"

hk_require git

# A private, fixed environment: no user or system configuration, fixed identities and dates.
export HOME=$HK_WORK/home GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME="Ada Tester" GIT_AUTHOR_EMAIL=ada@example.org
export GIT_COMMITTER_NAME="Bob Committer" GIT_COMMITTER_EMAIL=bob@example.org
export GIT_PAGER=cat PAGER=cat LC_ALL=C TZ=UTC GIT_TERMINAL_PROMPT=0
mkdir -p "$HOME"

commit_at() {
  local mode=$1 when=$2 message=$3
  GIT_AUTHOR_DATE="@$when +0000" GIT_COMMITTER_DATE="@$when +0000" hk_step "$mode" git commit -q -m "$message"
}

run_git() {
  local mode=$1 i
  hk_step "$mode" git init -q -b main repo
  cd repo || return 1
  hk_step "$mode" git config gc.auto 0
  hk_step "$mode" git config maintenance.auto false
  hk_step "$mode" git config core.autocrlf false
  hk_step "$mode" git config pack.threads 1  # delta search with several threads is not deterministic
  for i in $(seq 1 40); do
    printf 'file %d\n' "$i" >"notes-$i.txt"
    seq 1 $((i * 50)) | sed "s/^/line $i: /" >>"notes-$i.txt"
  done
  mkdir -p src
  printf '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n' >src/hello.c
  hk_step "$mode" git add .
  commit_at "$mode" 1700000000 "Initial import"
  for i in 1 2 3; do
    printf 'revision %d\n' "$i" >>notes-1.txt
    seq 1 300 | sed "s/$/ rev $i/" >"data-$i.txt"
    hk_step "$mode" git add -A
    commit_at "$mode" $((1700000000 + i * 3600)) "Revision $i on main"
  done
  hk_step "$mode" git checkout -q -b feature HEAD~2
  for i in 1 2; do
    printf 'feature work %d\n' "$i" >>"notes-2$i.txt"
    printf 'int feature_%d(void) { return %d; }\n' "$i" "$i" >>src/feature.c
    hk_step "$mode" git add -A
    commit_at "$mode" $((1700050000 + i * 60)) "Feature step $i"
  done
  hk_step "$mode" git checkout -q main
  GIT_AUTHOR_DATE="@1700090000 +0000" GIT_COMMITTER_DATE="@1700090000 +0000" \
    hk_step "$mode" git merge -q --no-ff -m "Merge branch feature" feature
  GIT_COMMITTER_DATE="@1700090100 +0000" hk_step "$mode" git tag -a v1.0 -m "Version 1.0"
  hk_step "$mode" git log --graph --format='%h %an %ad %s' --date=iso-strict
  echo "--- hashes"
  hk_step "$mode" git log --all --format=%H
  hk_step "$mode" git rev-list --count HEAD
  hk_step "$mode" git diff --stat HEAD~3 HEAD
  hk_step "$mode" git show --stat --format='%H %P' HEAD
  hk_step "$mode" git blame -s notes-1.txt
  hk_step "$mode" git grep -c 'line 3' HEAD
  hk_step "$mode" git shortlog -sn HEAD
  hk_step "$mode" git gc -q --aggressive
  hk_step "$mode" git count-objects -v
  hk_step "$mode" git fsck --no-progress --strict
  hk_step "$mode" git status --porcelain
  hk_step "$mode" git cat-file -p v1.0
}

hk_compare git run_git -- launcher
hk_finish
