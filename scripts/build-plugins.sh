#!/usr/bin/env bash
# Builds every plugin in plugins/ for wasm32-wasip2 and lays them out as a
# plugin folder the host loads: <name>.wasm next to its <name>.toml manifest.
#
#   scripts/build-plugins.sh [OUT_DIR]
#
# OUT_DIR defaults to $CARGO_TARGET_DIR/switchyard-plugins (or
# target/switchyard-plugins). Prints the folder on stdout.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PLUGIN_TARGET="$TARGET_DIR/plugins-build"
OUT="${1:-$TARGET_DIR/switchyard-plugins}"
mkdir -p "$OUT"
packages=()
for manifest in "$ROOT"/plugins/*/plugin.toml; do
  crate_dir="$(dirname "$manifest")"
  packages+=(-p "$(basename "$crate_dir")")
done
(cd "$ROOT" && CARGO_TARGET_DIR="$PLUGIN_TARGET" cargo build --quiet --release --target wasm32-wasip2 "${packages[@]}" >&2)
for manifest in "$ROOT"/plugins/*/plugin.toml; do
  crate="$(basename "$(dirname "$manifest")")"
  name="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n1)"
  cp "$PLUGIN_TARGET/wasm32-wasip2/release/${crate//-/_}.wasm" "$OUT/$name.wasm"
  cp "$manifest" "$OUT/$name.toml"
done
echo "$OUT"
