#!/usr/bin/env bash
# `make setup` / `make setup-dev`: provide what is missing, say how long each step took.
#   scripts/setup.sh        the venv and the Pulumi engine: all the demo and deploys need
#   scripts/setup.sh dev    also actionlint, which the tests need
# Quiet when nothing is missing; otherwise one summary line at the end.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/progress.sh
. "$root/scripts/progress.sh"

steps=(ensure-venv ensure-engine)
case "${1:-}" in
  "") ;;
  dev) steps+=(ensure-actionlint) ;;
  *) say "usage: scripts/setup.sh [dev]"; exit 2 ;;
esac

SETUP_SUMMARY="$(mktemp)"
export SETUP_SUMMARY
trap 'rm -f "$SETUP_SUMMARY"' EXIT
t0=$SECONDS
for step in "${steps[@]}"; do
  bash "$root/scripts/$step.sh"
done
if [ -s "$SETUP_SUMMARY" ]; then
  say "setup done in $(duration $((SECONDS - t0))): $(paste -sd, "$SETUP_SUMMARY" | sed 's/,/, /g')"
fi
