#!/usr/bin/env bash
# Installs what Switchyard's build, demo and tests need on a fresh machine.
# Idempotent and quick when everything is already there.
#
# - Debian packages: protobuf-compiler (tonic's build), cmake and friends
#   (librdkafka's build), maven and a JDK (Kafka from Maven Central).
# - The Rust target wasm32-wasip2 (plugins), and node/npm for the JavaScript
#   plugin (the Python plugin's build script makes its own virtualenv).
# - A Python virtualenv with Confluent's client and fastavro (independent
#   wire-format checks), under $SWITCHYARD_CACHE/venv.
# - Go, new enough to build the stack's Jaeger (scripts/stack/jaeger/go.mod):
#   only checked, as Debian's golang-go is usually too old; the go.dev
#   release goes into /usr/local/go.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"
mkdir -p "$CACHE"

log() { printf 'setup: %s\n' "$*" >&2; }

need_apt=()
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v mvn >/dev/null || need_apt+=(maven)
if ! command -v java >/dev/null || ! java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])'; then
  # Kafka 4 needs Java 17 or newer.
  need_apt+=(openjdk-17-jre-headless)
fi
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
command -v curl >/dev/null || need_apt+=(curl)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v make >/dev/null || need_apt+=(build-essential)
# JavaScript plugins are built with componentize-js (npm).
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
if ((${#need_apt[@]})); then
  log "installing debian packages: ${need_apt[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  log "cargo is missing: install Rust with rustup first"
  exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  log "adding the rust target wasm32-wasip2"
  rustup target add wasm32-wasip2 >&2
fi

# The stack builds Jaeger with the first new enough of the Go on PATH and
# /usr/local/go/bin/go (the go.dev tarball's place, often not on PATH); new
# enough is at least the go line of Jaeger's module.
GO_NEED="$(awk '$1 == "go" { print $2 }' "$ROOT/scripts/stack/jaeger/go.mod")"
GO_FOUND=""
GO_TRIED=""
for GO in "$(command -v go || true)" /usr/local/go/bin/go; do
  [[ -n "$GO" && -x "$GO" && "$GO" != "$GO_TRIED" ]] || continue
  GO_TRIED="$GO"
  GO_HAVE="$( (cd / && GOTOOLCHAIN=local "$GO" version 2>/dev/null) | awk '{ sub(/^go/, "", $3); print $3 }' || true)"
  if [[ -n "$GO_HAVE" && "$(printf '%s\n%s\n' "$GO_NEED" "$GO_HAVE" | sort -V | head -n1)" == "$GO_NEED" ]]; then
    GO_FOUND="$GO"
    break
  fi
  if [[ -n "$GO_HAVE" ]]; then
    log "$GO is go $GO_HAVE, older than the $GO_NEED needed to build Jaeger"
  else
    log "$GO does not say its version"
  fi
done
if [[ -z "$GO_FOUND" ]]; then
  log "go $GO_NEED or newer is required to build Jaeger for the local stack"
  log "Debian's golang-go package is usually older. Install a current release from https://go.dev/dl/"
  log "(X.Y.Z: its version), and scripts/stack.sh finds it even when /usr/local/go/bin is not on PATH:"
  log "  sudo rm -rf /usr/local/go && curl -fsSL https://go.dev/dl/goX.Y.Z.linux-$(dpkg --print-architecture 2>/dev/null || echo amd64).tar.gz | sudo tar -C /usr/local -xz"
  exit 1
fi

VENV="$CACHE/venv"
REQUIREMENTS="$ROOT/tests/python/requirements.txt"
if [[ ! -x "$VENV/bin/python" ]] || ! cmp -s "$REQUIREMENTS" "$VENV/.requirements"; then
  log "creating the python virtualenv in $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$VENV/.requirements"
fi
