#!/usr/bin/env bash
# Provide .venv with every locked Python requirement. Idempotent: the stamp .venv/.installed,
# newer than requirements.txt and constraints.txt, means the venv is complete (make's own rule,
# so a venv that a Makefile of an earlier version built is not installed again).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/progress.sh
. "$root/scripts/progress.sh"

venv="$root/.venv"
stamp="$venv/.installed"
requirements="$root/requirements.txt"
constraints="$root/constraints.txt"

if [ -f "$stamp" ] && [ "$stamp" -nt "$requirements" ] && [ "$stamp" -nt "$constraints" ]; then
  exit 0
fi

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  say "Python >= 3.11 is needed as '$python' (set PYTHON=/path/to/python3.11 to use another)"
  exit 1
fi

# pip prints one "Collecting" line per package it resolves: against the lock's size, that is
# how far it got.
locked="$(grep -c '==' "$constraints")"
pip_probe() {
  if grep -q '^Installing collected packages' "$1"; then
    echo "installing the packages"
  else
    echo "$(grep -c '^Collecting ' "$1") of $locked packages fetched"
  fi
}

install() {
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
    -r "$requirements" -c "$constraints"
}

say "Python venv: installing $locked locked packages into .venv (cold: about 1-2 min)"
run_step "Python venv" venv pip_probe install
touch "$stamp"
