#!/usr/bin/env bash
# Builds the Python portal router into a Switchyard plugin:
# OUT_DIR/py-portal-router.wasm (a `router`-world component made by
# componentize-py) next to its manifest OUT_DIR/py-portal-router.toml.
#
#   plugins/py-portal-router/build.sh OUT_DIR
#
# The tools of requirements.txt live in a virtualenv under
# ${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}/componentize-py-venv; the first
# run creates it (needs PyPI), later runs work offline. The `wit_world`
# bindings are generated from ../../wit on every build and never committed:
# componentize-py generates its own copy inside the component, and the copy in
# build/bindings/ is for editors and type checkers. A component newer than all
# of its inputs is not rebuilt.
set -euo pipefail

NAME="py-portal-router"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WIT="$HERE/../../wit"
CACHE="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"
VENV="$CACHE/componentize-py-venv"

die() {
  echo "$NAME/build.sh: $*" >&2
  exit 1
}

[[ $# -eq 1 && -n "$1" ]] || die "usage: build.sh OUT_DIR"
command -v python3 >/dev/null 2>&1 || die "python3 is not installed; install Python 3.9 or newer (with its venv module)"
[[ -d "$WIT" ]] || die "WIT contract not found at $WIT"

mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
WASM="$OUT/$NAME.wasm"
TOOL="$VENV/bin/componentize-py"
STAMP="$VENV/.switchyard-requirements.txt"

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

# (Re)install the tools when they are missing or requirements.txt changed
# since the last install.
if [[ ! -x "$TOOL" ]] || ! cmp -s "$HERE/requirements.txt" "$STAMP"; then
  if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -c 'import venv, ensurepip' 2>/dev/null ||
      die "python3 $(python3 -c 'import platform; print(platform.python_version())') has no venv/ensurepip module; install it (Debian: apt-get install python3-venv)"
    mkdir -p "$CACHE"
    quiet python3 -m venv "$VENV"
  fi
  quiet "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input -r "$HERE/requirements.txt"
  cp "$HERE/requirements.txt" "$STAMP"
fi

# Bindings for editors and type checkers, regenerated from the contract.
rm -rf "$HERE/build/bindings"
quiet "$TOOL" --quiet -d "$WIT" -w router bindings "$HERE/build/bindings"

# Up to date when the component is newer than every input.
stale=1
if [[ -f "$WASM" ]]; then
  newer="$(find "$HERE/src" "$WIT" "$HERE/requirements.txt" "$HERE/build.sh" "$STAMP" \
    -newer "$WASM" -print -quit)"
  [[ -n "$newer" ]] || stale=0
fi

if ((stale)); then
  # componentize-py appends the site-packages of $VIRTUAL_ENV (looked for
  # under its lib/), or else of whatever python3 is on PATH, to the app's
  # path. Point it at an empty one so nothing of the build machine's Python
  # (its site-packages and .pth hooks) ends up in the component.
  app_env="$HERE/build/app-env"
  rm -rf "$app_env"
  mkdir -p "$app_env/lib/site-packages"
  tmp="$OUT/.$NAME.wasm.tmp"
  (
    cd "$HERE"
    VIRTUAL_ENV="$app_env" quiet "$TOOL" --quiet -d "$WIT" -w router \
      componentize -p "$HERE/src" -o "$tmp" portal_router
  )
  mv -f "$tmp" "$WASM"
fi
cp "$HERE/plugin.toml" "$OUT/$NAME.toml"
