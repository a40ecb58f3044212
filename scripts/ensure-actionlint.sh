#!/usr/bin/env bash
# Provide actionlint (lints our users' GitHub Actions workflow in the test suite), built from
# the Go module proxy into .tools/bin. Idempotent: an existing binary of the pinned version
# stays. Only the test and lint targets need it; the demo does not.
set -euo pipefail
ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-1.7.12}"
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/progress.sh
. "$root/scripts/progress.sh"
bin="$root/.tools/bin/actionlint"
if [ -x "$bin" ] && [ "$("$bin" -version 2>/dev/null | head -n 1)" = "v$ACTIONLINT_VERSION" ]; then
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  say "actionlint: a Go toolchain (>= 1.25, https://go.dev/dl) is needed to build actionlint" \
      "$ACTIONLINT_VERSION for the tests; \`make demo\` runs without it"
  exit 1
fi

build_actionlint() {
  GOBIN="$root/.tools/bin" GOFLAGS=-buildvcs=false \
    go install -v -trimpath -ldflags "-s -w" \
    "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION"
}
# `go install -v` names each package it compiles; its module fetches start with "go: ".
actionlint_probe() {
  echo "$(grep -c '^go: downloading' "$1") modules fetched, $(grep -cv '^go: ' "$1") packages compiled"
}

say "actionlint: building $ACTIONLINT_VERSION from the Go module proxy (cold: about 1 min)"
run_step actionlint actionlint actionlint_probe build_actionlint
