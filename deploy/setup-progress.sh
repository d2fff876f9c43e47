#!/usr/bin/env bash
# Progress for deploy/setup.sh's long steps (pip, cargo, maturin, apt), which
# are silent for minutes with -q and print hundreds of lines without it.
# `busy WHAT CMD...` runs CMD with its output in a temporary log and says,
# every HEARTBEAT seconds (default 20), that WHAT is still going, for how long,
# and the tool's latest telling line; on a terminal that line is rewritten in
# place every second instead. It ends with "done: WHAT (N s)", or on failure
# with the log's last 40 lines and CMD's exit status.
#
# Sourced by setup.sh; run directly (`deploy/setup-progress.sh WHAT CMD...`)
# it runs one command that way, which is how tests/test_setup_progress.py
# exercises it.

HEARTBEAT=${HEARTBEAT:-20}

say() { printf '[setup] %s\n' "$*" >&2; }

# The latest line of a step's log worth showing: what pip collects or
# downloads, what cargo compiles, what apt unpacks; with a count of crates
# downloaded so far instead of a line for each.
latest() {
  local line crates
  line=$(grep -E '^ *(Collecting|Downloading|Using cached|Installing collected|Building wheel|Compiling|Unpacking|Setting up|Get:)' "$1" 2>/dev/null | tail -n 1 | sed -E 's/^ +//' | cut -c1-90 || true)
  crates=$(grep -c '^ *Downloaded ' "$1" 2>/dev/null || true)
  if [ "${crates:-0}" -gt 0 ]; then line="$crates crates downloaded${line:+; $line}"; fi
  printf '%s' "$line"
}

# busy WHAT CMD...: run CMD with its output in a log, saying every HEARTBEAT
# seconds that WHAT is still going; on failure show the log's tail.
busy() {
  local what=$1; shift
  local out; out=$(mktemp "${TMPDIR:-/tmp}/embedfleet-setup.XXXXXX")
  local start=$SECONDS last=$SECONDS tty=0 rc=0
  [ -t 2 ] && tty=1
  "$@" >"$out" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if [ $((SECONDS - last)) -ge "$HEARTBEAT" ] || { [ $tty = 1 ] && [ $((SECONDS - start)) -ge 2 ]; }; then
      last=$SECONDS
      local msg; msg="still $what… $((SECONDS - start)) s$(l=$(latest "$out"); [ -n "$l" ] && printf ' (%s)' "$l")"
      if [ $tty = 1 ]; then printf '\r\033[K[setup] %s' "$msg" >&2; else say "$msg"; fi
    fi
  done
  wait "$pid" || rc=$?
  if [ $tty = 1 ]; then printf '\r\033[K' >&2; fi
  if [ $rc -ne 0 ]; then
    say "$what failed (exit $rc) after $((SECONDS - start)) s; the end of its output:"
    tail -n 40 "$out" >&2
    rm -f "$out"
    return $rc
  fi
  say "done: $what ($((SECONDS - start)) s)"
  rm -f "$out"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  busy "$@"
fi
