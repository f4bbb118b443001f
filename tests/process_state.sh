# Shared by tests/integration/lib.sh and tests/stats/lib.sh (sourced, never run directly).

# wait_stopped PID: after kill -STOP, waits (up to 5 s) until the kernel shows PID stopped: the
# signal takes effect asynchronously, and a command run at once could still find it running.
wait_stopped() {
  local state
  for _ in $(seq 100); do
    state=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 0
    [[ $state == T ]] && return 0
    sleep 0.05
  done
}
