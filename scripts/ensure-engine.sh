#!/usr/bin/env bash
# Provide the Pulumi engine (CLI + Python language host + the two helper scripts) offline.
# A `pulumi` 3.x already on PATH is used as is; otherwise the pinned release is built from
# the Go module proxy into .tools/pulumi (git-ignored). Idempotent: a finished build is
# recognised by its stamp file and never redone. Go's own output goes to .tools/logs/.
set -euo pipefail

PULUMI_VERSION="${PULUMI_VERSION:-3.260.0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/progress.sh
. "$root/scripts/progress.sh"
dest="$root/.tools/pulumi"
stamp="$dest/.built-v$PULUMI_VERSION"

if [ -f "$stamp" ] && [ -x "$dest/pulumi" ]; then
  exit 0
fi

# A pulumi on PATH other than our own: the Makefile puts .tools/pulumi first on PATH, and
# linking a half-built engine there to itself would replace the binary by a loop.
user_pulumi() {
  local dir
  local -a dirs
  IFS=: read -r -a dirs <<< "$PATH"
  for dir in "${dirs[@]}"; do
    if [ -x "$dir/pulumi" ] && ! [ "$dir/pulumi" -ef "$dest/pulumi" ]; then
      echo "$dir/pulumi"; return 0
    fi
  done
  return 1
}

if [ -z "${PULUMI_FORCE_BUILD:-}" ] && theirs="$(user_pulumi)"; then
  found="$("$theirs" version 2>/dev/null || true)"
  case "$found" in
    v3.*)
      say "Pulumi engine: using pulumi $found from PATH ($theirs); nothing to build"
      mkdir -p "$dest"
      ln -sf "$theirs" "$dest/pulumi"
      touch "$stamp"
      exit 0 ;;
  esac
fi

if ! command -v go >/dev/null 2>&1; then
  say "no pulumi 3.x on PATH and no Go toolchain to build one: install Go >= 1.25 (https://go.dev/dl) or put pulumi 3.x on PATH"
  exit 1
fi

build="$root/.tools/build"
mkdir -p "$build/cli" "$build/langhost" "$dest" "$SETUP_LOGS"
export GOFLAGS="-buildvcs=false -mod=mod"
ldflags="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION"
t0=$SECONDS

# What the CLI build's log shows so far: modules fetched, then packages compiled against
# the number of packages the CLI depends on (an upper bound: Go's cache skips some).
cli_probe() {
  local total
  if total="$(cat "$build/cli/deps-count" 2>/dev/null)"; then
    echo "compiling and linking: $(grep -cv '^go: ' "$1") of up to $total packages compiled (Go's cache has the rest)"
  else
    echo "fetching Go modules: $(grep -c '^go: downloading' "$1") so far"
  fi
}

# The CLI: pkg/go.mod carries replace directives (sdk -> ../sdk, a clipboard fork), so
# `go install pkg@version` refuses it; a wrapper module that requires pkg and sdk at the
# same version builds it (a dependency's replaces are ignored, so we restate the fork).
build_cli() {
  cd "$build/cli"
  rm -f deps-count
  cat > go.mod <<MOD
module local/pulumi-cli

go 1.25

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
MOD
  go get "github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VERSION" "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION"
  go list -deps github.com/pulumi/pulumi/pkg/v3/cmd/pulumi | wc -l | tr -d ' ' > deps-count.tmp
  mv deps-count.tmp deps-count
  # -v names each package as it is compiled (the only lines of this log not starting with
  # "go: "): the heartbeat counts them.
  go build -v -trimpath -ldflags "$ldflags" -o "$dest/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
}

if [ ! -x "$dest/pulumi" ] || [ "$("$dest/pulumi" version 2>/dev/null)" != "v$PULUMI_VERSION" ]; then
  say "Pulumi engine: building the pulumi CLI v$PULUMI_VERSION from the Go module proxy" \
      "(cold: 3-10 min, by cores; log: ${SETUP_LOGS/#$root\//}/engine-cli.log)"
  run_step "pulumi CLI" engine-cli cli_probe build_cli
fi

# The Python language host has no version tags of its own: try the commit of the sdk tag. The
# proxy refuses that module at every version seen so far; then our own host
# (scripts/pulumi_language_python.py: same gRPC protocol, on the SDK's own stubs) is installed.
build_langhost() {
  local rev="" mod
  for mod in sdk pkg; do
    rev="$(cd "$build/cli" && go list -m -json "github.com/pulumi/pulumi/$mod/v3@v$PULUMI_VERSION" \
          | python3 -c 'import json,sys; print(json.load(sys.stdin).get("Origin",{}).get("Hash",""))')"
    [ -n "$rev" ] && break
  done
  cd "$build/langhost"
  cat > go.mod <<MOD
module local/pulumi-language-python

go 1.25
MOD
  if [ -n "$rev" ] \
      && go get "github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3@$rev" \
                "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" \
      && go build -trimpath -ldflags "$ldflags" -o "$dest/pulumi-language-python" \
                github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3; then
    return 0
  fi
  echo "the Go module proxy does not serve pulumi-language-python; installing scripts/pulumi_language_python.py"
  cat > "$dest/pulumi-language-python" <<SH
#!/bin/sh
# Pulumi's Python language host is not on the Go module proxy; this one speaks its protocol.
PULUMI_LANGUAGE_PYTHON_EXEC="$dest/pulumi-language-python-exec" export PULUMI_LANGUAGE_PYTHON_EXEC
exec "$root/.venv/bin/python" "$root/scripts/pulumi_language_python.py" "\$@"
SH
  chmod 0755 "$dest/pulumi-language-python"
}

if [ ! -x "$dest/pulumi-language-python" ]; then
  run_step "language host" engine-langhost no_detail build_langhost
  if [ "$(head -c 2 "$dest/pulumi-language-python")" = "#!" ]; then
    say "  language host: scripts/pulumi_language_python.py (the Go module proxy does not serve Pulumi's)"
  fi
fi

# The two scripts the engine expects next to its binaries live in the sdk module's python/ folder.
sdkdir="$(cd "$build/cli" && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3 2>>"$SETUP_LOGS/engine-cli.log")"
for script in pulumi-language-python-exec pulumi-resource-pulumi-python pulumi-analyzer-policy-python; do
  src="$(find "$sdkdir/python" -maxdepth 3 -name "$script" -type f | head -n 1)"
  if [ -n "$src" ]; then
    install -m 0755 "$src" "$dest/$script"
  elif [ "$script" != pulumi-analyzer-policy-python ]; then
    say "could not find $script under $sdkdir/python"; exit 1
  fi
done

got="$("$dest/pulumi" version)"
if [ "$got" != "v$PULUMI_VERSION" ]; then
  say "built CLI reports '$got', expected v$PULUMI_VERSION"; exit 1
fi
touch "$stamp"
say "Pulumi engine: pulumi $got ready in ${dest/#$root\//} ($(duration $((SECONDS - t0))))"
