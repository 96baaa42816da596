#!/usr/bin/env bash
# README command 2: every test.
#
# Installs what is missing, brings the local stack up (real Kafka and Jaeger
# on loopback), then runs the unit tests, the plugin tests, the doc tests and
# the integration tests against the stack. Nothing is skipped: if a service
# the tests need cannot start, this fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
export SWITCHYARD_PYTHON="${SWITCHYARD_PYTHON:-$CACHE/venv/bin/python}"
# The tests talk to the broker that `stack.sh up` starts below.
export SWITCHYARD_TEST_KAFKA="127.0.0.1:${SWITCHYARD_KAFKA_PORT:-9092}"
# And to its Jaeger: spans go in over OTLP gRPC, come back from the query API.
export SWITCHYARD_TEST_OTLP_ENDPOINT="http://127.0.0.1:${SWITCHYARD_JAEGER_OTLP_GRPC_PORT:-4317}"
export SWITCHYARD_TEST_JAEGER_QUERY="http://127.0.0.1:${SWITCHYARD_JAEGER_QUERY_PORT:-16686}"

bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/stack.sh" up

cd "$ROOT"
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
status=0
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee -a "$LOG" || status=1
cargo test --workspace --doc 2>&1 | tee -a "$LOG" || status=1

# One closing line for the whole run: cargo prints a result per test binary,
# and the last of those is often a crate with no doc tests.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "switchyard: %d passed, %d failed\n", p, f }' "$LOG"
exit "$status"
