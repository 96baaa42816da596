#!/usr/bin/env bash
# Builds the JavaScript portal router into a Switchyard plugin:
# OUT_DIR/js-portal-router.wasm (a `router`-world component made by
# componentize-js) next to its manifest OUT_DIR/js-portal-router.toml.
#
#   plugins/js-portal-router/build.sh OUT_DIR
#
# The first run installs the exact tool versions of package-lock.json into
# this folder's node_modules/ (`npm ci`, needs the npm registry); later runs
# work offline. A component newer than all of its inputs is not rebuilt.
set -euo pipefail

NAME="js-portal-router"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WIT="$HERE/../../wit"

die() {
  echo "$NAME/build.sh: $*" >&2
  exit 1
}

[[ $# -eq 1 && -n "$1" ]] || die "usage: build.sh OUT_DIR"
command -v node >/dev/null 2>&1 || die "node is not installed; install Node.js 20 or newer (with npm)"
command -v npm >/dev/null 2>&1 || die "npm is not installed; install it next to node"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
((node_major >= 20)) || die "node $(node --version) is too old; componentize-js needs Node.js 20 or newer"
[[ -d "$WIT" ]] || die "WIT contract not found at $WIT"

mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
WASM="$OUT/$NAME.wasm"
TOOL="$HERE/node_modules/.bin/componentize-js"

# Runs a command quietly, showing its output only when it fails.
quiet() {
  local log
  log="$(mktemp)"
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    die "failed: $*"
  fi
  rm -f "$log"
}

# (Re)install the tools when they are missing or package-lock.json changed
# since the last install (npm ci writes node_modules/.package-lock.json).
if [[ ! -x "$TOOL" || "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]]; then
  (cd "$HERE" && quiet npm ci --include=dev --no-audit --no-fund)
fi

# Up to date when the component is newer than every input.
stale=1
if [[ -f "$WASM" ]]; then
  newer="$(find "$HERE/src" "$WIT" "$HERE/package-lock.json" "$HERE/build.sh" \
    "$HERE/node_modules/.package-lock.json" -newer "$WASM" -print -quit)"
  [[ -n "$newer" ]] || stale=0
fi

if ((stale)); then
  tmp="$OUT/.$NAME.wasm.tmp"
  # The host grants WASI p2 without networking: leave out wasi:http.
  quiet "$TOOL" "$HERE/src/router.js" \
    --wit "$WIT" --world-name router \
    --disable http fetch-event \
    --out "$tmp"
  mv -f "$tmp" "$WASM"
fi
cp "$HERE/plugin.toml" "$OUT/$NAME.toml"
