#!/usr/bin/env bash
# Provide the Pulumi engine (CLI + Python language host + the two helper scripts) offline.
# A `pulumi` 3.x already on PATH is used as is; otherwise the pinned release is built from
# the Go module proxy into .tools/pulumi (git-ignored). Idempotent: a finished build is
# recognised by its stamp file and never redone.
set -euo pipefail

PULUMI_VERSION="${PULUMI_VERSION:-3.260.0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.tools/pulumi"
stamp="$dest/.built-v$PULUMI_VERSION"

log() { printf '[engine] %s\n' "$*" >&2; }

if [ -f "$stamp" ] && [ -x "$dest/pulumi" ]; then
  exit 0
fi

if [ -z "${PULUMI_FORCE_BUILD:-}" ] && command -v pulumi >/dev/null 2>&1; then
  found="$(pulumi version 2>/dev/null || true)"
  case "$found" in
    v3.*)
      log "using pulumi $found from PATH ($(command -v pulumi))"
      mkdir -p "$dest"
      ln -sf "$(command -v pulumi)" "$dest/pulumi"
      touch "$stamp"
      exit 0 ;;
  esac
fi

if ! command -v go >/dev/null 2>&1; then
  log "no pulumi 3.x on PATH and no Go toolchain to build one: install Go >= 1.25 (https://go.dev/dl) or put pulumi 3.x on PATH"
  exit 1
fi

build="$root/.tools/build"
mkdir -p "$build/cli" "$build/langhost" "$dest"
export GOFLAGS="-buildvcs=false -mod=mod"
ldflags="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION"
t0=$(date +%s)

# The CLI: pkg/go.mod carries replace directives (sdk -> ../sdk, a clipboard fork), so
# `go install pkg@version` refuses it; a wrapper module that requires pkg and sdk at the
# same version builds it (a dependency's replaces are ignored, so we restate the fork).
if [ ! -x "$dest/pulumi" ] || [ "$("$dest/pulumi" version 2>/dev/null)" != "v$PULUMI_VERSION" ]; then
  log "building pulumi CLI v$PULUMI_VERSION from the Go module proxy (first time: several minutes)"
  cat > "$build/cli/go.mod" <<MOD
module local/pulumi-cli

go 1.25

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
MOD
  (cd "$build/cli" \
    && go get "github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VERSION" "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" \
    && go build -trimpath -ldflags "$ldflags" -o "$dest/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
fi

# The Python language host has no version tags of its own: try the commit of the sdk tag. The
# proxy refuses that module at every version seen so far; then our own host
# (scripts/pulumi_language_python.py: same gRPC protocol, on the SDK's own stubs) is installed.
if [ ! -x "$dest/pulumi-language-python" ]; then
  rev=""
  for mod in sdk pkg; do
    rev="$(cd "$build/cli" && go list -m -json "github.com/pulumi/pulumi/$mod/v3@v$PULUMI_VERSION" \
          | python3 -c 'import json,sys; print(json.load(sys.stdin).get("Origin",{}).get("Hash",""))')"
    [ -n "$rev" ] && break
  done
  cat > "$build/langhost/go.mod" <<MOD
module local/pulumi-language-python

go 1.25
MOD
  if [ -n "$rev" ] && (cd "$build/langhost" \
      && go get "github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3@$rev" \
                "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" \
      && go build -trimpath -ldflags "$ldflags" -o "$dest/pulumi-language-python" \
                github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3) 2>"$build/langhost.log"; then
    log "built pulumi-language-python from the Go module proxy"
  else
    log "the Go module proxy does not serve pulumi-language-python; installing scripts/pulumi_language_python.py"
    cat > "$dest/pulumi-language-python" <<SH
#!/bin/sh
# Pulumi's Python language host is not on the Go module proxy; this one speaks its protocol.
PULUMI_LANGUAGE_PYTHON_EXEC="$dest/pulumi-language-python-exec" export PULUMI_LANGUAGE_PYTHON_EXEC
exec "$root/.venv/bin/python" "$root/scripts/pulumi_language_python.py" "\$@"
SH
    chmod 0755 "$dest/pulumi-language-python"
  fi
fi

# The two scripts the engine expects next to its binaries live in the sdk module's python/ folder.
sdkdir="$(cd "$build/cli" && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)"
for script in pulumi-language-python-exec pulumi-resource-pulumi-python pulumi-analyzer-policy-python; do
  src="$(find "$sdkdir/python" -maxdepth 3 -name "$script" -type f | head -n 1)"
  if [ -n "$src" ]; then
    install -m 0755 "$src" "$dest/$script"
  elif [ "$script" != pulumi-analyzer-policy-python ]; then
    log "could not find $script under $sdkdir/python"; exit 1
  fi
done

got="$("$dest/pulumi" version)"
if [ "$got" != "v$PULUMI_VERSION" ]; then
  log "built CLI reports '$got', expected v$PULUMI_VERSION"; exit 1
fi
touch "$stamp"
log "pulumi $got ready in $dest ($(( $(date +%s) - t0 )) s)"
