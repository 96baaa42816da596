#!/usr/bin/env bash
# README command 1: the claim-status demo on the sample X12 data.
#
# Installs what is missing, brings the local stack up, builds the host and
# the plugins, starts the host, publishes every X12 277 file of
# ../shared/data/x12/277 through the REST API and prints what the providers'
# portal streams receive over SSE, and one file's whole trip as Jaeger
# recorded it. The host stops at the end; the stack keeps running
# (`scripts/stack.sh down` stops it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
DATA="${1:-$ROOT/../shared/data/x12/277}"
HTTP="${SWITCHYARD_DEMO_HTTP:-127.0.0.1:8080}"

bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/stack.sh" up

echo "demo: building the host and the plugins (the first build takes several minutes)" >&2
(cd "$ROOT" && cargo build --quiet -p switchyard)
PLUGINS="$(bash "$ROOT/scripts/build-plugins.sh")"

mkdir -p "$ROOT/.stack"
cat >"$ROOT/.stack/demo.toml" <<TOML
[kafka]
bootstrap_servers = "127.0.0.1:${SWITCHYARD_KAFKA_PORT:-9092}"

[http]
listen = "$HTTP"

[registry]
schemas_dir = "$ROOT/schemas"

[plugins]
dir = "$PLUGINS"

[telemetry]
otlp_endpoint = "http://127.0.0.1:${SWITCHYARD_JAEGER_OTLP_GRPC_PORT:-4317}"
service_name = "switchyard-demo"
TOML

"$CARGO_TARGET_DIR/debug/switchyard" serve --config "$ROOT/.stack/demo.toml" >"$ROOT/.stack/demo-host.log" 2>&1 &
HOST_PID=$!
trap 'kill "$HOST_PID" 2>/dev/null; wait "$HOST_PID" 2>/dev/null || true' EXIT

up=0
for _ in $(seq 1 240); do
  if curl -fsS "http://$HTTP/healthz" >/dev/null 2>&1; then
    up=1
    break
  fi
  if ! kill -0 "$HOST_PID" 2>/dev/null; then
    echo "demo: the host stopped during start-up; its log:" >&2
    tail -n 20 "$ROOT/.stack/demo-host.log" >&2
    exit 1
  fi
  sleep 0.5
done
if ((!up)); then
  echo "demo: the host did not answer on http://$HTTP within 120 s; its log:" >&2
  tail -n 20 "$ROOT/.stack/demo-host.log" >&2
  exit 1
fi
echo "demo: host is up on http://$HTTP (log: .stack/demo-host.log)" >&2

python3 "$ROOT/demo/portal_demo.py" "http://$HTTP" "$DATA" \
  "http://127.0.0.1:${SWITCHYARD_JAEGER_QUERY_PORT:-16686}"
