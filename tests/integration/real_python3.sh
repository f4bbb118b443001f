#!/usr/bin/env bash
# Real Python under heapkeeper: Debian's /usr/bin/python3 (and the python3 on PATH when that is a
# different interpreter, e.g. a pyenv build or its shim script) runs workload.py with the default
# allocator (pymalloc arenas on top of malloc) or, with the argument "malloc", PYTHONMALLOC=malloc
# so that every object goes through malloc/free. Output and status must match a plain run.
# Usage: real_python3.sh [default|malloc]
source "$(dirname "$0")/lib.sh"

variant=${1:-default}
hk_require /usr/bin/python3
workload=$(dirname "$(readlink -f "$0")")/workload.py
export PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
if [[ $variant == malloc ]]; then
  export PYTHONMALLOC=malloc
else
  unset PYTHONMALLOC
fi

run_python() {
  local mode=$1 python=$2
  hk_exec "$mode" "$python" "$workload"
}

hk_compare "debian_python3_$variant" run_python /usr/bin/python3 -- launcher preload

path_python=$(command -v python3 || true)
if [[ -n $path_python && $(readlink -f "$path_python") != $(readlink -f /usr/bin/python3) ]]; then
  echo "python3 on PATH is $path_python; testing it too"
  hk_compare "path_python3_$variant" run_python "$path_python" -- launcher
  # A pyenv shim is a bash script that forks and execs a dozen helpers before the interpreter:
  # test the interpreter it resolves to on its own as well, so a failure can be told apart.
  if [[ $(head -c 2 "$path_python") == '#!' ]] && command -v pyenv >/dev/null 2>&1; then
    resolved=$(pyenv which python3 2>/dev/null || true)
    if [[ -x $resolved && $(readlink -f "$resolved") != $(readlink -f /usr/bin/python3) ]]; then
      echo "the shim runs $resolved; testing it directly"
      hk_compare "pyenv_python3_$variant" run_python "$resolved" -- launcher
    fi
  fi
fi
hk_finish
