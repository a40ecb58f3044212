# shellcheck shell=bash
# Progress for the long, silent steps of setup (sourced by scripts/ensure-*.sh).
#
# A step's own output (pip's, `go: downloading …`) goes to a log under .tools/logs/; the
# terminal gets what is being built, a heartbeat with the elapsed time and what the log shows
# so far, how long the step took, and on failure the log's path and its tail.

SETUP_LOGS="${SETUP_LOGS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.tools/logs}"
# Seconds between two heartbeat lines: often enough to show life, rare enough for CI logs.
SETUP_HEARTBEAT_S="${SETUP_HEARTBEAT_S:-20}"
SETUP_TAIL_LINES="${SETUP_TAIL_LINES:-25}"

say() { printf '[setup] %s\n' "$*" >&2; }

# 95 -> "1m35s", 7 -> "7s".
duration() {
  local s=$1
  if (( s >= 60 )); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

# Each finished step adds "label duration" to the file the orchestrator (scripts/setup.sh)
# passes in SETUP_SUMMARY, so it can print one summary line for the whole setup.
record() {
  if [ -n "${SETUP_SUMMARY:-}" ]; then printf '%s %s\n' "$1" "$(duration "$2")" >> "$SETUP_SUMMARY"; fi
}

# Prints a heartbeat every SETUP_HEARTBEAT_S until killed. It wakes every second (not once
# per period) so that, once killed, no sleeping child keeps the terminal's pipe open.
heartbeat() {
  local label=$1 log=$2 probe=$3 t0=$4 next=$(( $4 + SETUP_HEARTBEAT_S )) detail
  while sleep 1; do
    if (( SECONDS >= next )); then
      detail="$("$probe" "$log" 2>/dev/null || true)"
      say "  $label: $(duration $((SECONDS - t0))) elapsed${detail:+, $detail}"
      next=$(( SECONDS + SETUP_HEARTBEAT_S ))
    fi
  done
}

# A probe for steps whose log says nothing countable: no detail, the elapsed time only.
no_detail() { :; }

# run_step LABEL LOGNAME PROBE COMMAND...: runs COMMAND in a subshell in the foreground (so
# Ctrl-C reaches it) with its output in .tools/logs/LOGNAME.log, and a heartbeat beside it.
# PROBE LOGFILE prints a few words on what the log shows so far. COMMAND runs under `set -e`
# and is never put in an `if`/`||`/`&&` (bash ignores `set -e` inside those, so a failed
# `go get` would go on to build whatever `go build` resolves); call run_step as a plain
# command for the same reason. A failure shows the log's tail and ends the script.
run_step() {
  local label=$1 name=$2 probe=$3
  shift 3
  mkdir -p "$SETUP_LOGS"
  STEP_LABEL=$label STEP_LOG="$SETUP_LOGS/$name.log" STEP_T0=$SECONDS
  : > "$STEP_LOG"
  heartbeat "$label" "$STEP_LOG" "$probe" "$STEP_T0" &
  STEP_BEAT=$!
  trap step_failed EXIT
  trap step_interrupted INT TERM
  ( set -euo pipefail; "$@" ) >> "$STEP_LOG" 2>&1
  # Reached only when the caller runs without `set -e` (with it, a failure ends the script above).
  local rc=$?
  trap - EXIT INT TERM
  if (( rc != 0 )); then step_failed "$rc"; fi
  stop_heartbeat
  local took=$((SECONDS - STEP_T0))
  say "  $label: done in $(duration "$took")"
  record "$label" "$took"
}

stop_heartbeat() {
  kill "$STEP_BEAT" 2>/dev/null || true
  wait "$STEP_BEAT" 2>/dev/null || true
}

# Stops the heartbeat, shows the log's tail and exits with the step's status (the EXIT trap's
# $?, or $1 when called directly).
step_failed() {
  local rc=${1:-$?}
  stop_heartbeat
  say "$STEP_LABEL failed after $(duration $((SECONDS - STEP_T0))) (exit $rc); the last" \
      "$SETUP_TAIL_LINES lines of $STEP_LOG:"
  tail -n "$SETUP_TAIL_LINES" "$STEP_LOG" | sed 's/^/    /' >&2
  exit "$rc"
}

# Ctrl-C (or a TERM) reaches the step's command too; say where its log is, exit as shells do.
step_interrupted() {
  trap - EXIT INT TERM
  stop_heartbeat
  say "$STEP_LABEL interrupted after $(duration $((SECONDS - STEP_T0))); its log so far: $STEP_LOG"
  exit 130
}
