#!/usr/bin/env bash
# The local stack: real Apache Kafka (KRaft, one combined broker/controller)
# on loopback, installed from Maven Central jars. No Docker engine needed.
#
#   scripts/stack.sh up       install if needed, start, wait until it answers
#   scripts/stack.sh down     stop what `up` started
#   scripts/stack.sh status   say what runs, exit 0 only if all of it answers
#
# Downloads are cached under $SWITCHYARD_CACHE (default ~/.cache/switchyard);
# logs and data live in .stack/ in the work tree, which git ignores.
# Running `up` twice is a no-op the second time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"
STATE="${SWITCHYARD_STACK_DIR:-$ROOT/.stack}"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/stack/pom.xml")"
KAFKA_JARS="$CACHE/kafka-$KAFKA_VERSION/libs"
KAFKA_PORT="${SWITCHYARD_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${SWITCHYARD_KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_DIR="$STATE/kafka"

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
  return $ok
}

case "${1:-}" in
  up) kafka_up ;;
  down) stop_pid kafka "$KAFKA_DIR/pid" ;;
  status) status ;;
  reset)
    stop_pid kafka "$KAFKA_DIR/pid"
    rm -rf "$STATE"
    log "removed $STATE"
    ;;
  *)
    echo "usage: $0 up|down|status|reset" >&2
    exit 2
    ;;
esac
