#!/usr/bin/env bash
# Switchyard and Kafka Streams side by side, on one broker of their own, in
# one run; writes bench/COMPARISON.md.
#
#   bash bench/compare.sh                      # 100,000 events over 5,000 claims, 3 rounds
#   bash bench/compare.sh --rounds 1 --events 20000 --claims 1000
#
# It starts a fresh Kafka on 127.0.0.1:29092/29093 (scripts/stack.sh with
# SWITCHYARD_STACK_DIR=/tmp/compare-stack), runs bench/compare.py (setup,
# the runs a-e, the report) and stops the broker at the end, whatever
# happens. Switchyard hosts listen on 127.0.0.1:28080 (REST), 28081
# (registry) and 28051 (gRPC); nothing leaves loopback.
#
# Options are compare.py's (python3 bench/compare.py --help), plus:
#   --keep-stack   reuse the broker's data from an earlier run instead of
#                  starting from an empty one, and leave the broker running
#
# Environment:
#   SWITCHYARD_BIN  the release binary to run (default: built from this work
#                   tree with cargo build --release into
#                   $SWITCHYARD_CACHE/target-bench, then copied to
#                   /tmp/compare/switchyard so the runs use one fixed file)
#   PYTHON          a python with confluent-kafka and fastavro (default
#                   /tmp/kstreams-venv/bin/python, made if missing)
#   JVM_OPTS        options for the Kafka Streams JVM (default: none, as run.sh)
#   COMPARE_WORK    work folder (default /tmp/compare/work)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
CACHE="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"
export SWITCHYARD_KAFKA_PORT=29092
export SWITCHYARD_KAFKA_CONTROLLER_PORT=29093
export SWITCHYARD_STACK_DIR=/tmp/compare-stack
BOOTSTRAP="127.0.0.1:$SWITCHYARD_KAFKA_PORT"
WORK="${COMPARE_WORK:-/tmp/compare/work}"
BIN="${SWITCHYARD_BIN:-}"
TARGET_BENCH="$CACHE/target-bench"
PLUGINS="$WORK/../built-plugins"
log() { printf 'compare.sh: %s\n' "$*" >&2; }

KEEP_STACK=0
ARGS=()
for arg in "$@"; do
  case "$arg" in
    --keep-stack) KEEP_STACK=1 ;;
    -h|--help) sed -n '2,27p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) ARGS+=("$arg") ;;
  esac
done

# The Switchyard binary and the plugins the runs use, built from this work
# tree (quick when nothing changed).
if [[ -z "$BIN" ]]; then
  log "building the release binary in $TARGET_BENCH"
  (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_BENCH" cargo build --release --locked -p switchyard --bin switchyard)
  BIN=/tmp/compare/switchyard
  mkdir -p "$(dirname "$BIN")"
  cp "$TARGET_BENCH/release/switchyard" "$BIN"
fi
log "building the plugins"
(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_BENCH" cargo build --release --locked --target wasm32-wasip2 \
  -p claim-appeal-aggregator -p portal-router -p status-category-router)
mkdir -p "$PLUGINS"
for manifest in "$ROOT/plugins/claim-appeal-aggregator/plugin.toml" "$ROOT/plugins/portal-router/plugin.toml" \
  "$ROOT/bench/plugins/status-category-router/plugin.toml"; do
  name="$(basename "$(dirname "$manifest")")"
  cp "$manifest" "$PLUGINS/$name.toml"
  cp "$TARGET_BENCH/wasm32-wasip2/release/${name//-/_}.wasm" "$PLUGINS/$name.wasm"
done

# Python with Confluent's client and fastavro.
if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=/tmp/kstreams-venv/bin/python
  if [[ ! -x "$PYTHON" ]]; then
    log "making the virtualenv /tmp/kstreams-venv"
    python3 -m venv /tmp/kstreams-venv
    /tmp/kstreams-venv/bin/pip install -q confluent-kafka==2.16.1 fastavro
  fi
fi
export PYTHON

# The Kafka Streams jar.
if [[ ! -f "$HERE/kstreams/target/kstreams-bench.jar" ]]; then
  log "building the Kafka Streams app"
  (cd "$HERE/kstreams" && mvn -q -B package)
fi

# Our ports must be free (the broker's are checked by stack.sh).
for port in 28080 28081 28051; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "port $port is in use; stop what listens there first"
    exit 1
  fi
done

# The broker: fresh unless --keep-stack; stopped on exit either way unless --keep-stack.
if ((KEEP_STACK == 0)); then
  bash "$ROOT/scripts/stack.sh" reset
fi
stop_stack() {
  if ((KEEP_STACK == 0)); then
    bash "$ROOT/scripts/stack.sh" down kafka || true
  fi
}
trap stop_stack EXIT
# Kafka only: Jaeger plays no part here (the hosts export no spans).
bash "$ROOT/scripts/stack.sh" up kafka
BROKER_PID="$(cat "$SWITCHYARD_STACK_DIR/kafka/pid")"
# For the report: the command as given.
export COMPARE_COMMAND="bash bench/compare.sh${ARGS[*]+ ${ARGS[*]}}$( ((KEEP_STACK)) && echo ' --keep-stack')"

"$PYTHON" "$HERE/compare.py" --bootstrap "$BOOTSTRAP" --broker-pid "$BROKER_PID" --bin "$BIN" \
  --plugins "$PLUGINS" --work "$WORK" ${ARGS[@]+"${ARGS[@]}"}
