#!/usr/bin/env bash
# Runs the Kafka Streams side of the benchmark once, against a broker whose
# input topic generate.py has already filled, and prints one JSON line.
#
#   bash bench/kstreams/run.sh --bootstrap 127.0.0.1:29092 --expect /tmp/expect.json
#
# Options (all optional but --expect, which the correctness check needs):
#   --bootstrap HOST:PORT   broker (default 127.0.0.1:29092)
#   --topic T               input topic (default claim)
#   --expect FILE           expected result written by generate.py --expect
#   --threads N             num.stream.threads (default 1)
#   --commit-interval-ms M  commit.interval.ms (default 100, the EOS default)
#   --app-id ID             application.id (default: a fresh one per run)
#   --keep                  keep the run's internal topics (by default they are
#                           deleted, as are empty groups of earlier runs)
# Environment: JVM_OPTS (default empty: the JVM's own defaults), PYTHON (a
# python with confluent-kafka; default /tmp/kstreams-venv/bin/python if it
# exists, else python3), JAR (default target/kstreams-bench.jar, built if
# missing), LOG (where the app's output goes; default a temp file).
#
# The run is over when the application's consumer group has committed, on
# every input partition, the input's end offset. Under exactly_once_v2 the
# offsets are committed in the same transaction as the outputs they
# produced, so at that moment every summary and routed record is committed
# too. Outputs are then checked by reading them in read_committed mode.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BOOTSTRAP="127.0.0.1:29092"
TOPIC="claim"
EXPECT=""
THREADS=1
COMMIT_MS=100
APP_ID="kstreams-bench-$(date +%s)"
KEEP=0
ROUTED_TOPIC="bench.routed"
SUMMARIES_TOPIC="bench.summaries"
while (($#)); do
  case "$1" in
    --bootstrap) BOOTSTRAP="$2"; shift 2 ;;
    --topic) TOPIC="$2"; shift 2 ;;
    --expect) EXPECT="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --commit-interval-ms) COMMIT_MS="$2"; shift 2 ;;
    --app-id) APP_ID="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,25p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n "$EXPECT" && -f "$EXPECT" ]] || { echo "run.sh: --expect FILE (from generate.py --expect) is required" >&2; exit 2; }

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x /tmp/kstreams-venv/bin/python ]]; then PYTHON=/tmp/kstreams-venv/bin/python; else PYTHON=python3; fi
fi
JAR="${JAR:-$HERE/target/kstreams-bench.jar}"
JVM_OPTS="${JVM_OPTS:-}"
if [[ ! -f "$JAR" ]]; then
  echo "run.sh: building $JAR" >&2
  (cd "$HERE" && mvn -q -B package)
fi
log() { printf 'run.sh: %s\n' "$*" >&2; }

WORK="$(mktemp -d /tmp/kstreams-run.XXXXXX)"
LOG="${LOG:-$WORK/app.log}"
APP_PID=""
stop_app() {
  if [[ -n "$APP_PID" ]] && kill -0 "$APP_PID" 2>/dev/null; then
    kill -TERM "$APP_PID" 2>/dev/null || true
    for _ in $(seq 1 120); do kill -0 "$APP_PID" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$APP_PID" 2>/dev/null; then
      log "the app did not stop within 60 s; killing it"
      kill -KILL "$APP_PID" 2>/dev/null || true
    fi
    wait "$APP_PID" 2>/dev/null || true
  fi
  APP_PID=""
}
cleanup() {
  stop_app
  if ((KEEP == 0)); then
    "$PYTHON" "$HERE/runtools.py" cleanup --bootstrap "$BOOTSTRAP" --group "$APP_ID" \
      --stale-prefix kstreams-bench- || true
  fi
  if [[ "$LOG" == "$WORK/app.log" && -f "$LOG" ]]; then cp "$LOG" /tmp/kstreams-last-app.log; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# Outputs exist, and where they end now (only what this run adds is checked).
"$PYTHON" "$HERE/runtools.py" prepare --bootstrap "$BOOTSTRAP" --input "$TOPIC" \
  --outputs "$ROUTED_TOPIC" "$SUMMARIES_TOPIC" >"$WORK/start.json"
EVENTS="$("$PYTHON" -c 'import json,sys; print(sum(json.load(open(sys.argv[1]))["input"]["ends"].values()))' "$WORK/start.json")"
EXPECTED_EVENTS="$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["events"])' "$EXPECT")"
if [[ "$EVENTS" != "$EXPECTED_EVENTS" ]]; then
  log "warning: $TOPIC holds $EVENTS records but $EXPECT describes $EXPECTED_EVENTS events"
fi
# What the JVM picks by itself on this machine (heap size, collector), for the record.
JVM_FLAGS="$(java $JVM_OPTS -XX:+PrintCommandLineFlags -version 2>/dev/null | head -n1 \
  | sed -e 's/ *-XX:+PrintCommandLineFlags//' -e 's/[[:space:]]*$//')"
JAVA_VERSION="$(java -version 2>&1 | head -n1)"

log "starting the app (application.id $APP_ID, $THREADS thread(s), commit every $COMMIT_MS ms) on $EVENTS events"
START_MS="$(date +%s%3N)"
# shellcheck disable=SC2086 # JVM_OPTS is a list of options
java $JVM_OPTS -jar "$JAR" \
  --bootstrap "$BOOTSTRAP" --application-id "$APP_ID" --input-topic "$TOPIC" \
  --threads "$THREADS" --commit-interval-ms "$COMMIT_MS" --state-dir "$WORK/state" \
  --routed-topic "$ROUTED_TOPIC" --summaries-topic "$SUMMARIES_TOPIC" \
  >"$LOG" 2>&1 &
APP_PID=$!

if ! "$PYTHON" "$HERE/runtools.py" watch --bootstrap "$BOOTSTRAP" --group "$APP_ID" --input "$TOPIC" \
    --ends "$WORK/start.json" --pid "$APP_PID" >"$WORK/watch.json"; then
  log "the run did not finish: $(cat "$WORK/watch.json"); last lines of the app's log:"
  tail -n 40 "$LOG" >&2
  exit 1
fi
HWM="$(awk '/^VmHWM:/ {print $2 * 1024}' "/proc/$APP_PID/status")"
# utime + stime of the whole JVM (all threads) so far, in clock ticks.
CPU_TICKS="$(awk '{print $14 + $15}' "/proc/$APP_PID/stat")"
stop_app
RUNNING_MS="$(awk '$1 == "kstreams-bench" && $2 == "running" {print $3; exit}' "$LOG")"
STOP_LINE="$(awk '$1 == "kstreams-bench" && $2 == "stopped"' "$LOG")"
[[ -n "$STOP_LINE" ]] && log "app: ${STOP_LINE#kstreams-bench }"

"$PYTHON" "$HERE/runtools.py" verify --bootstrap "$BOOTSTRAP" --expect "$EXPECT" --start "$WORK/start.json" \
  --summaries "$SUMMARIES_TOPIC" --routed "$ROUTED_TOPIC" >"$WORK/verify.json" || true
log "check: $(cat "$WORK/verify.json")"

"$PYTHON" - "$WORK/watch.json" "$WORK/verify.json" "$EVENTS" "$START_MS" "${RUNNING_MS:-}" "${HWM:-0}" \
  "$JVM_OPTS" "$JVM_FLAGS" "$JAVA_VERSION" "$THREADS" "$COMMIT_MS" "$CPU_TICKS" "$(getconf CLK_TCK)" <<'PY'
import json, sys
watch, verify = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
events, start = int(sys.argv[3]), int(sys.argv[4])
running = int(sys.argv[5]) if sys.argv[5] else None
hwm = int(sys.argv[6])
seconds = (watch["done_ms"] - start) / 1000
line = {
    "system": "kafka-streams",
    "events": events,
    "seconds": round(seconds, 3),
    "events_per_second": round(events / seconds, 1),
    "seconds_after_running": None if running is None else round((watch["done_ms"] - running) / 1000, 3),
    "events_per_second_after_running": None if running is None
        else round(events / max((watch["done_ms"] - running) / 1000, 1e-3), 1),
    "cpu_seconds": round(int(sys.argv[12]) / int(sys.argv[13]), 2),
    "peak_rss_bytes": max(hwm, watch["max_rss_bytes"]),
    "vmhwm_bytes": hwm,
    "max_sampled_rss_bytes": watch["max_rss_bytes"],
    "jvm_opts": sys.argv[7],
    "jvm_ergonomic_flags": sys.argv[8],
    "java": sys.argv[9],
    "num_stream_threads": int(sys.argv[10]),
    "commit_interval_ms": int(sys.argv[11]),
    "correct": bool(verify.get("correct")),
}
print(json.dumps(line))
PY
