#!/usr/bin/env bash
# Provide actionlint (lints our users' GitHub Actions workflow in the test suite), built from
# the Go module proxy into .tools/bin. Idempotent: an existing binary of the pinned version stays.
set -euo pipefail
ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-1.7.12}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.tools/bin/actionlint"
if [ -x "$bin" ] && [ "$("$bin" -version 2>/dev/null | head -n 1)" = "v$ACTIONLINT_VERSION" ]; then
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "[actionlint] a Go toolchain is needed to build actionlint $ACTIONLINT_VERSION" >&2
  exit 1
fi
echo "[actionlint] building actionlint $ACTIONLINT_VERSION from the Go module proxy" >&2
GOBIN="$root/.tools/bin" GOFLAGS=-buildvcs=false \
  go install -trimpath -ldflags "-s -w" \
  "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION"
