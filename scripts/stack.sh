#!/usr/bin/env bash
# The local stack, on loopback only and with no Docker engine needed:
# - real Apache Kafka (KRaft, one combined broker/controller), installed from
#   Maven Central jars;
# - Jaeger v2 all-in-one (OTLP in, query API out, traces in memory only),
#   built with Go from the module pinned in scripts/stack/jaeger/. Its UI is
#   a placeholder page: the UI's assets are not part of the Go module.
#
#   scripts/stack.sh up       install if needed, start, wait until it answers
#   scripts/stack.sh down     stop what `up` started
#   scripts/stack.sh status   say what runs, exit 0 only if all of it answers
#   scripts/stack.sh reset    stop, then delete the logs and data
#
# `up` and `down` take an optional service, `kafka` or `jaeger`, to start or
# stop that one only (a test that needs a broker of its own starts just
# Kafka on other ports).
#
# Ports on 127.0.0.1, and the variables that move them:
#   9092   Kafka              SWITCHYARD_KAFKA_PORT
#   9093   Kafka controller   SWITCHYARD_KAFKA_CONTROLLER_PORT
#   4317   Jaeger OTLP gRPC   SWITCHYARD_JAEGER_OTLP_GRPC_PORT
#   4318   Jaeger OTLP HTTP   SWITCHYARD_JAEGER_OTLP_HTTP_PORT
#   16686  Jaeger query HTTP  SWITCHYARD_JAEGER_QUERY_PORT
#   16685  Jaeger query gRPC  SWITCHYARD_JAEGER_QUERY_GRPC_PORT
#   13133  Jaeger health      SWITCHYARD_JAEGER_HEALTH_PORT
#
# Downloads and the Jaeger binary are cached under $SWITCHYARD_CACHE (default
# ~/.cache/switchyard); the first Jaeger build compiles it from source (about
# 11 minutes and 2 GB of memory on 2 cores; seconds with a warm Go cache).
# Logs and data live in .stack/ in the work tree ($SWITCHYARD_STACK_DIR),
# which git ignores. Running `up` twice is a no-op the second time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"
STATE="${SWITCHYARD_STACK_DIR:-$ROOT/.stack}"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/stack/pom.xml")"
KAFKA_JARS="$CACHE/kafka-$KAFKA_VERSION/libs"
KAFKA_PORT="${SWITCHYARD_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${SWITCHYARD_KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_DIR="$STATE/kafka"
JAEGER_MOD="$ROOT/scripts/stack/jaeger"
# Jaeger v2.N is version v1.(N+63) of its Go module (see its go.mod).
JAEGER_MODULE_VERSION="$(awk '$1 == "github.com/jaegertracing/jaeger" { print $2 }' "$JAEGER_MOD/go.mod")"
JAEGER_VERSION="$(awk -F. '{ printf "2.%d.%s", $2 - 63, $3 }' <<<"$JAEGER_MODULE_VERSION")"
JAEGER_BIN="$CACHE/jaeger-$JAEGER_VERSION/jaeger"
JAEGER_DIR="$STATE/jaeger"
JAEGER_OTLP_GRPC_PORT="${SWITCHYARD_JAEGER_OTLP_GRPC_PORT:-4317}"
JAEGER_OTLP_HTTP_PORT="${SWITCHYARD_JAEGER_OTLP_HTTP_PORT:-4318}"
JAEGER_QUERY_PORT="${SWITCHYARD_JAEGER_QUERY_PORT:-16686}"
JAEGER_QUERY_GRPC_PORT="${SWITCHYARD_JAEGER_QUERY_GRPC_PORT:-16685}"
JAEGER_HEALTH_PORT="${SWITCHYARD_JAEGER_HEALTH_PORT:-13133}"

log() { printf 'stack: %s\n' "$*" >&2; }

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pid_alive() {
  [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

install_kafka() {
  if [[ -f "$KAFKA_JARS/.complete" ]]; then
    return
  fi
  command -v mvn >/dev/null || { log "maven (\`mvn\`) is required to fetch Kafka; run scripts/setup.sh"; exit 1; }
  command -v java >/dev/null || { log "java 17+ is required to run Kafka; run scripts/setup.sh"; exit 1; }
  log "resolving Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_JARS"
  rm -rf "$KAFKA_JARS" && mkdir -p "$KAFKA_JARS"
  (cd "$ROOT/scripts/stack" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$KAFKA_JARS")
  touch "$KAFKA_JARS/.complete"
}

kafka_java() {
  java -Xms256m -Xmx768m -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" \
    -Dkafka.logs.dir="$KAFKA_DIR/logs" \
    -cp "$KAFKA_JARS/*" "$@"
}

write_kafka_config() {
  mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
  cat > "$KAFKA_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.check.interval.ms=30000
PROPS
  cat > "$KAFKA_DIR/log4j2.properties" <<PROPS
appender.file.type=File
appender.file.name=file
appender.file.fileName=$KAFKA_DIR/logs/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
logger.kafka.name=kafka
logger.kafka.level=INFO
logger.apache.name=org.apache.kafka
logger.apache.level=INFO
PROPS
}

kafka_up() {
  if pid_alive "$KAFKA_DIR/pid" && port_open "$KAFKA_PORT"; then
    log "kafka already running on 127.0.0.1:$KAFKA_PORT (pid $(cat "$KAFKA_DIR/pid"))"
    return
  fi
  if port_open "$KAFKA_PORT"; then
    log "port $KAFKA_PORT is taken by a process this script did not start; stop it or set SWITCHYARD_KAFKA_PORT"
    exit 1
  fi
  install_kafka
  write_kafka_config
  if [[ ! -f "$KAFKA_DIR/data/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid | tail -n1)"
    log "formatting KRaft storage (cluster $cluster_id)"
    kafka_java kafka.tools.StorageTool format --standalone -t "$cluster_id" \
      -c "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/logs/format.log" 2>&1 \
      || { cat "$KAFKA_DIR/logs/format.log" >&2; exit 1; }
  fi
  log "starting kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT"
  : >"$KAFKA_DIR/logs/server.log"
  nohup java -Xms256m -Xmx768m -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" \
    -Dkafka.logs.dir="$KAFKA_DIR/logs" \
    -cp "$KAFKA_JARS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
    >"$KAFKA_DIR/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$KAFKA_DIR/pid"
  local deadline=$((SECONDS + 90))
  until port_open "$KAFKA_PORT" && grep -q "Kafka Server started" "$KAFKA_DIR/logs/server.log" 2>/dev/null; do
    if ! pid_alive "$KAFKA_DIR/pid"; then
      log "kafka exited during start-up; last lines of its log:"
      tail -n 30 "$KAFKA_DIR/logs/server.log" "$KAFKA_DIR/logs/stdout.log" >&2 || true
      exit 1
    fi
    if (( SECONDS > deadline )); then
      log "kafka did not answer within 90 s; see $KAFKA_DIR/logs/server.log"
      exit 1
    fi
    sleep 0.5
  done
  log "kafka is up on 127.0.0.1:$KAFKA_PORT"
}

# The Go that builds Jaeger, as "path version": the first new enough of the
# one on PATH and the one the go.dev tarball installs into /usr/local/go,
# which is often not on PATH (while Debian's golang-go there is often too
# old). The version is asked from /, where no go.mod asks for another
# toolchain.
find_go() {
  local need="$1" go have tried=""
  for go in "$(command -v go || true)" /usr/local/go/bin/go; do
    [[ -n "$go" && -x "$go" && "$go" != "$tried" ]] || continue
    tried="$go"
    have="$( (cd / && GOTOOLCHAIN=local "$go" version 2>/dev/null) | awk '{ sub(/^go/, "", $3); print $3 }' || true)"
    if [[ -n "$have" && "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" == "$need" ]]; then
      echo "$go $have"
      return
    fi
    if [[ -n "$have" ]]; then
      log "$go is go $have, older than the $need that Jaeger needs"
    else
      log "$go does not say its version"
    fi
  done
  return 1
}

install_jaeger() {
  if [[ -x "$JAEGER_BIN" ]]; then
    return
  fi
  # The module's go line is the oldest Go its dependencies accept.
  local go need have found
  need="$(awk '$1 == "go" { print $2 }' "$JAEGER_MOD/go.mod")"
  if ! found="$(find_go "$need")"; then
    log "go $need or newer is required to build Jaeger; run scripts/setup.sh"
    exit 1
  fi
  read -r go have <<<"$found"
  log "building Jaeger $JAEGER_VERSION (module $JAEGER_MODULE_VERSION) into $JAEGER_BIN with go $have;" \
    "from a cold Go cache this takes about 11 minutes and 2 GB of memory on 2 cores"
  mkdir -p "$(dirname "$JAEGER_BIN")"
  # Linked under a temporary name and renamed when complete, so an
  # interrupted build never passes for a built binary.
  local partial="$JAEGER_BIN.partial.$$" goflags
  # GOTOOLCHAIN=local: use this Go, never download another. -mod=readonly:
  # build exactly what go.mod and go.sum pin, or fail; added to the user's
  # own GOFLAGS (the last -mod wins). -s -w: no symbol tables or DWARF,
  # 81 instead of 116 MiB; -X: `jaeger version` and its start-up log say
  # which release this is.
  goflags="$(cd "$JAEGER_MOD" && GOTOOLCHAIN=local "$go" env GOFLAGS)"
  if ! (
    trap 'rm -f "$partial"' EXIT
    cd "$JAEGER_MOD" &&
      GOTOOLCHAIN=local GOFLAGS="${goflags:+$goflags }-mod=readonly" nice -n 19 "$go" build \
        -ldflags "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=v$JAEGER_VERSION" \
        -o "$partial" github.com/jaegertracing/jaeger/cmd/jaeger &&
      mv -f "$partial" "$JAEGER_BIN"
  ); then
    log "building Jaeger failed (see the go output above)"
    exit 1
  fi
}

# Each port after the variable that moves it (for clear errors), one a line.
jaeger_ports() {
  printf '%s %s\n' \
    SWITCHYARD_JAEGER_OTLP_GRPC_PORT "$JAEGER_OTLP_GRPC_PORT" \
    SWITCHYARD_JAEGER_OTLP_HTTP_PORT "$JAEGER_OTLP_HTTP_PORT" \
    SWITCHYARD_JAEGER_QUERY_PORT "$JAEGER_QUERY_PORT" \
    SWITCHYARD_JAEGER_QUERY_GRPC_PORT "$JAEGER_QUERY_GRPC_PORT" \
    SWITCHYARD_JAEGER_HEALTH_PORT "$JAEGER_HEALTH_PORT"
}

# The copy of scripts/stack/jaeger/config.yaml that Jaeger runs with: each
# ${env:NAME:-default} replaced by this script's value, so the file says
# exactly what runs and nothing depends on Jaeger's environment.
# shellcheck disable=SC2016 # the ${...} in single quotes are sed's and grep's, not the shell's
write_jaeger_config() {
  local port var
  local -a subst=(-e 's/\${env:JAEGER_LISTEN_HOST:-[^}]*}/127.0.0.1/g')
  while read -r var port; do
    if [[ ! "$port" =~ ^[1-9][0-9]{0,4}$ ]] || ((port > 65535)); then
      log "$var=$port is not a port number"
      exit 1
    fi
    subst+=(-e "s/\\\${env:$var:-[^}]*}/$port/g")
  done < <(jaeger_ports)
  mkdir -p "$JAEGER_DIR"
  sed "${subst[@]}" "$JAEGER_MOD/config.yaml" >"$JAEGER_DIR/config.yaml"
  # Any left outside a comment is one this script does not know.
  if grep -qE '^[^#]*\$\{' "$JAEGER_DIR/config.yaml"; then
    log "scripts/stack/jaeger/config.yaml has a placeholder this script does not fill:"
    grep -nE '^[^#]*\$\{' "$JAEGER_DIR/config.yaml" >&2
    exit 1
  fi
}

# The pid file's process is our Jaeger: it runs with this state's config
# (a stale pid file, say after a reboot, may name an unrelated process).
jaeger_running() {
  local cmdline
  pid_alive "$JAEGER_DIR/pid" &&
    cmdline="$(tr '\0' ' ' <"/proc/$(cat "$JAEGER_DIR/pid")/cmdline" 2>/dev/null)" &&
    [[ "$cmdline" == *" --config=file:$JAEGER_DIR/config.yaml"* ]]
}

jaeger_down() {
  if jaeger_running; then
    stop_pid jaeger "$JAEGER_DIR/pid"
  fi
  rm -f "$JAEGER_DIR/pid"
}

jaeger_healthy() {
  # --noproxy: a proxy from the environment must not see loopback requests.
  curl -fs --noproxy '*' --max-time 2 -o /dev/null "http://127.0.0.1:$JAEGER_HEALTH_PORT/status"
}

jaeger_up() {
  if jaeger_running; then
    if jaeger_healthy; then
      log "jaeger already running: OTLP 127.0.0.1:$JAEGER_OTLP_GRPC_PORT (gRPC) and" \
        "127.0.0.1:$JAEGER_OTLP_HTTP_PORT (HTTP), query http://127.0.0.1:$JAEGER_QUERY_PORT (pid $(cat "$JAEGER_DIR/pid"))"
      return
    fi
    # Ours, but not answering (still starting, or stuck): start afresh.
    log "jaeger (pid $(cat "$JAEGER_DIR/pid")) does not answer on 127.0.0.1:$JAEGER_HEALTH_PORT; restarting it"
    stop_pid jaeger "$JAEGER_DIR/pid"
  fi
  local port var
  while read -r var port; do
    if port_open "$port"; then
      log "port $port is taken by a process this script did not start; stop it or set $var"
      exit 1
    fi
  done < <(jaeger_ports)
  install_jaeger
  write_jaeger_config
  log "starting jaeger $JAEGER_VERSION (traces in memory only)"
  # nohup execs Jaeger, so $! is Jaeger's own pid.
  nohup "$JAEGER_BIN" --config="file:$JAEGER_DIR/config.yaml" \
    >"$JAEGER_DIR/jaeger.log" 2>&1 </dev/null &
  echo $! >"$JAEGER_DIR/pid"
  local deadline=$((SECONDS + 60))
  until jaeger_healthy; do
    if ! pid_alive "$JAEGER_DIR/pid"; then
      log "jaeger exited during start-up; last lines of its log:"
      tail -n 30 "$JAEGER_DIR/jaeger.log" >&2 || true
      rm -f "$JAEGER_DIR/pid"
      exit 1
    fi
    if (( SECONDS > deadline )); then
      log "jaeger did not answer on http://127.0.0.1:$JAEGER_HEALTH_PORT/status within 60 s; last lines of its log:"
      tail -n 30 "$JAEGER_DIR/jaeger.log" >&2 || true
      stop_pid jaeger "$JAEGER_DIR/pid"
      exit 1
    fi
    sleep 0.5
  done
  log "jaeger is up: OTLP 127.0.0.1:$JAEGER_OTLP_GRPC_PORT (gRPC) and 127.0.0.1:$JAEGER_OTLP_HTTP_PORT (HTTP)," \
    "query http://127.0.0.1:$JAEGER_QUERY_PORT (log: $JAEGER_DIR/jaeger.log)"
}

stop_pid() {
  local name="$1" pidfile="$2"
  if pid_alive "$pidfile"; then
    local pid
    pid="$(cat "$pidfile")"
    log "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop within 30 s; killing it"
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

status() {
  local ok=0
  if pid_alive "$KAFKA_DIR/pid" && port_open "$KAFKA_PORT"; then
    echo "kafka    up    127.0.0.1:$KAFKA_PORT (pid $(cat "$KAFKA_DIR/pid"))"
  else
    echo "kafka    down"
    ok=1
  fi
  if jaeger_running && jaeger_healthy; then
    echo "jaeger   up    OTLP 127.0.0.1:$JAEGER_OTLP_GRPC_PORT (gRPC), 127.0.0.1:$JAEGER_OTLP_HTTP_PORT (HTTP);" \
      "query http://127.0.0.1:$JAEGER_QUERY_PORT (pid $(cat "$JAEGER_DIR/pid"))"
  else
    echo "jaeger   down"
    ok=1
  fi
  return $ok
}

SERVICE="${2:-all}"
case "$SERVICE" in
  all | kafka | jaeger) ;;
  *)
    echo "usage: $0 up|down [kafka|jaeger]; $0 status|reset" >&2
    exit 2
    ;;
esac
case "${1:-}" in
  up)
    [[ $SERVICE == jaeger ]] || kafka_up
    [[ $SERVICE == kafka ]] || jaeger_up
    ;;
  down)
    [[ $SERVICE == kafka ]] || jaeger_down
    [[ $SERVICE == jaeger ]] || stop_pid kafka "$KAFKA_DIR/pid"
    ;;
  status) status ;;
  reset)
    jaeger_down
    stop_pid kafka "$KAFKA_DIR/pid"
    rm -rf "$STATE"
    log "removed $STATE"
    ;;
  *)
    echo "usage: $0 up|down [kafka|jaeger]; $0 status|reset" >&2
    exit 2
    ;;
esac
