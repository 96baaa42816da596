#!/usr/bin/env bash
# Runs the plugin benchmark and writes bench/REPORT.md.
#
#   bash bench/run.sh
#
# Two measurements of the same eight variants, in one run:
# - instructions per event under valgrind's callgrind (repeatable on these
#   machines, whatever else runs): each variant runs twice, with SMALL and
#   LARGE events, and the difference divided by LARGE - SMALL removes the
#   set-up (compiling, instantiating) from the count;
# - wall-clock nanoseconds per event, the variants interleaved in rounds so
#   machine noise hits them alike (noisy on shared 2-core machines; the
#   ratios are what to read).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
SMALL="${SMALL:-1000}"
LARGE="${LARGE:-6000}"
WALL="${WALL:-20000}"

command -v valgrind >/dev/null || { echo "bench: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
cd "$ROOT"
# The test crate's build script builds the plugins and the fixtures.
cargo build --quiet --tests -p switchyard-tests
cargo build --quiet --release -p switchyard-bench
BIN="$CARGO_TARGET_DIR/release/plugin-bench"
PLUGINS="$CARGO_TARGET_DIR/switchyard-test-plugins"
FIXTURES="$CARGO_TARGET_DIR/switchyard-test-fixtures"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

variants=(wasm-noop native-noop wasm-portal native-portal pipeline-wasm-noop pipeline-native-noop pipeline-wasm-portal pipeline-native-portal)
# Wall clock first: it also fills the compiled-plugin cache, so the runs
# under valgrind load compiled code instead of compiling at 50x slowdown.
"$BIN" all "$WALL" "$PLUGINS" "$FIXTURES" >"$OUT/wall.csv"
for v in "${variants[@]}"; do
  # Natively once more: wasmtime writes its compiled-code cache in the
  # background, and a run that compiles under valgrind would count the
  # compilation as part of the small run.
  "$BIN" "$v" 10 "$PLUGINS" "$FIXTURES" >/dev/null
  sleep 1
  for n in "$SMALL" "$LARGE"; do
    valgrind --tool=callgrind --callgrind-out-file="$OUT/$v.$n.out" "$BIN" "$v" "$n" "$PLUGINS" "$FIXTURES" >/dev/null 2>"$OUT/$v.$n.log"
  done
  echo "bench: $v measured" >&2
done

python3 - "$OUT" "$SMALL" "$LARGE" "$WALL" "${variants[@]}" >"$ROOT/bench/REPORT.md" <<'PY'
import sys, re, platform, datetime, subprocess
out, small, large, wall = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
variants = sys.argv[5:]
def total(path):
    for line in open(path):
        if line.startswith("totals:") or line.startswith("summary:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {path}")
ipe = {v: (total(f"{out}/{v}.{large}.out") - total(f"{out}/{v}.{small}.out")) / (large - small) for v in variants}
ns = {}
for line in open(f"{out}/wall.csv").read().splitlines()[1:]:
    name, value = line.split(",")
    ns[name] = float(value)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
print("# Plugin benchmark: Wasm components against the same logic compiled natively\n")
print(f"Made by `bash bench/run.sh` on {datetime.date.today()} ({cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores).")
print(f"Instructions: callgrind, ({large} - {small}) events per variant. Wall clock: {wall} events x 5 interleaved rounds.\n")
print("What is measured: `*-noop` routes to a fixed topic; `*-portal` is the claim-status portal router")
print("(parse the object's JSON, pick `portal.provider.<id>`). `pipeline-*` adds what a routing pipeline does")
print("around the call for each record: Confluent-framed Avro decode of a real `claim.status-changed` object,")
print("building the event, and the forwarded record's headers. Kafka I/O is not included.\n")
print("| variant | instructions/event | ns/event (wall) |")
print("|---|---:|---:|")
for v in variants:
    print(f"| {v} | {ipe[v]:,.0f} | {ns.get(v, float('nan')):,.0f} |")
print("\n## Ratios (Wasm / native)\n")
print("| comparison | instructions | wall clock |")
print("|---|---:|---:|")
for a, b in [("wasm-noop", "native-noop"), ("wasm-portal", "native-portal"),
             ("pipeline-wasm-noop", "pipeline-native-noop"), ("pipeline-wasm-portal", "pipeline-native-portal")]:
    print(f"| {a} / {b} | {ipe[a]/ipe[b]:.2f}x | {ns[a]/ns[b]:.2f}x |")
share = ipe["pipeline-native-portal"] / ipe["pipeline-wasm-portal"]
wall_share = ns["pipeline-native-portal"] / ns["pipeline-wasm-portal"]
print(f"\nThroughput kept by a pipeline step routed through the Wasm portal router, against the native one:")
print(f"**{share:.0%}** by instructions, {wall_share:.0%} by wall clock (target: at least 85%).")
print("\nThese figures leave out the Kafka consume and produce that every real pipeline step also pays,")
print("which would shrink the difference further; they are the cost of the plugin boundary itself.")
PY
echo "bench: wrote bench/REPORT.md" >&2
cat "$ROOT/bench/REPORT.md"
