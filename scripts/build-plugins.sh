#!/usr/bin/env bash
# Builds every Rust plugin in plugins/ for wasm32-wasip2 and lays them out as
# a plugin folder the host loads: <name>.wasm next to its <name>.toml manifest.
# Plugins in other languages (plugins/js-*, plugins/py-*) have a build.sh of
# their own; pass --all to build them too (they need node and python3, and
# each takes the host 10-20 s of CPU to compile when it loads).
#
#   scripts/build-plugins.sh [OUT_DIR]
#
# OUT_DIR defaults to $CARGO_TARGET_DIR/switchyard-plugins (or
# target/switchyard-plugins). Prints the folder on stdout.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PLUGIN_TARGET="$TARGET_DIR/plugins-build"
ALL=0
if [[ "${1:-}" == "--all" ]]; then
  ALL=1
  shift
fi
OUT="${1:-$TARGET_DIR/switchyard-plugins}"
mkdir -p "$OUT"
packages=()
for manifest in "$ROOT"/plugins/*/Cargo.toml; do
  crate_dir="$(dirname "$manifest")"
  [[ -f "$crate_dir/plugin.toml" ]] || continue
  packages+=(-p "$(basename "$crate_dir")")
done
(cd "$ROOT" && CARGO_TARGET_DIR="$PLUGIN_TARGET" cargo build --quiet --release --target wasm32-wasip2 "${packages[@]}" >&2)
for manifest in "$ROOT"/plugins/*/plugin.toml; do
  dir="$(dirname "$manifest")"
  crate="$(basename "$dir")"
  if [[ ! -f "$dir/Cargo.toml" ]]; then
    if ((ALL)) && [[ -x "$dir/build.sh" ]]; then
      bash "$dir/build.sh" "$OUT" >&2
    fi
    continue
  fi
  name="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n1)"
  cp "$PLUGIN_TARGET/wasm32-wasip2/release/${crate//-/_}.wasm" "$OUT/$name.wasm"
  cp "$manifest" "$OUT/$name.toml"
done
echo "$OUT"
