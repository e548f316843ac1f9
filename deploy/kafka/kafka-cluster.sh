#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft: one JVM is broker and controller, no ZooKeeper) on
# loopback, for integration tests, fault tests and benchmarks. Jars: fetch-kafka.sh.
#
#   kafka-cluster.sh start NAME DIR [--port-file FILE] [--prop KEY=VALUE]...
#                    [--extra-listener LNAME=HOST:PORT]...
#       New cluster in DIR (its data/ and logs/ are wiped first): free ports picked now,
#       storage formatted with a random cluster id, broker started in the background.
#       Prints the bootstrap address (127.0.0.1:PORT) on stdout once the broker answers
#       metadata requests; FILE (if given) gets the broker port number alone.
#       --prop adds/overrides server.properties lines (e.g. --prop log.segment.bytes=1048576).
#       --extra-listener adds a PLAINTEXT listener LNAME (upper case) on a free loopback port
#       that advertises HOST:PORT instead of itself: clients that bootstrap through a proxy
#       at HOST:PORT (bench/delay_proxy, forwarding to that free port) keep using the proxy
#       for every broker connection. The free port is written to DIR/listener.LNAME.
#   kafka-cluster.sh restart DIR   stop, then start again with the same ports, id and data.
#   kafka-cluster.sh stop DIR      SIGTERM, up to 30 s, then SIGKILL. Keeps data/ and logs/.
#   kafka-cluster.sh status DIR    prints "running PID BOOTSTRAP" (exit 0) or "stopped" (exit 1).
#
# DIR afterwards: server.properties, log4j2.properties, cluster.id, ports, name, pid (while
# running), bootstrap, data/ (log.dirs + KRaft metadata), logs/ (server.log, kafka.out).
# Env: UOP_KAFKA_BROKER_HEAP_OPTS (default "-Xms256m -Xmx512m"), UOP_KAFKA_BROKER_JAVA_OPTS
# (extra JVM flags), UOP_KAFKA_START_TIMEOUT (seconds, default 90), UOP_KAFKA_CACHE (see
# fetch-kafka.sh).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

HOST=127.0.0.1
START_TIMEOUT="${UOP_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT=30

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# N (default 2: broker, controller, then one per extra listener) distinct free loopback
# ports: bind port 0 on all sockets at once so the kernel cannot hand out the same one twice.
# Another process may still take a port before Kafka binds it; start() retries with new
# ports when that happens.
free_ports() {
  python3 - "$HOST" "${1:-2}" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((sys.argv[1], 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# True if PID is alive and is the broker JVM of this DIR (guards against a recycled pid).
is_our_broker() {
  local pid="$1" dir="$2"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  # (grep without -q in pipes: with pipefail, -q exiting early can fail the pipeline by SIGPIPE)
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -F -- "$dir/server.properties" >/dev/null
}

running_pid() {
  local dir="$1" pid
  [[ -f "$dir/pid" ]] || return 1
  pid="$(cat "$dir/pid")"
  is_our_broker "$pid" "$dir" || return 1
  printf '%s\n' "$pid"
}

# Extra listeners for write_config: "LNAME ADVERTISED_HOST:PORT BIND_PORT" per element.
EXTRA_LISTENERS=()

write_config() {
  local dir="$1" bport="$2" cport="$3"
  shift 3
  local listeners="PLAINTEXT://$HOST:$bport,CONTROLLER://$HOST:$cport"
  local advertised="PLAINTEXT://$HOST:$bport,CONTROLLER://$HOST:$cport"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" entry lname adv lport
  for entry in "${EXTRA_LISTENERS[@]+"${EXTRA_LISTENERS[@]}"}"; do
    read -r lname adv lport <<<"$entry"
    listeners+=",$lname://$HOST:$lport"
    advertised+=",$lname://$adv"
    protocols+=",$lname:PLAINTEXT"
    printf '%s\n' "$lport" >"$dir/listener.$lname"
  done
  # Settings for one node doing everything on a 2-core box: every internal topic has
  # replication factor 1 / min ISR 1 (there is no second replica), few partitions and threads.
  cat >"$dir/server.properties" <<EOF
# Written by deploy/kafka/kafka-cluster.sh for cluster "$(cat "$dir/name")".
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$cport
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Tests create their topics explicitly; a typo must fail instead of creating a topic.
auto.create.topics.enable=false
EOF
  local kv
  for kv in "$@"; do
    printf '%s\n' "$kv" >>"$dir/server.properties"
  done

  # Broker log into DIR/logs (kept by stop for post-mortems); size-capped so long soak
  # tests cannot fill the disk. Request/state-change chatter is cut to WARN.
  cat >"$dir/log4j2.properties" <<EOF
name = uop-kafka-broker
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $dir/logs/server.log
appender.file.filePattern = $dir/logs/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
EOF
}

# kafka-tool.sh with its own settings: a caller's env meant for MM2 or perf-tool runs must
# not leak in. C1-only JIT: a one-second tool pays no C2 compile work (~0.6 s less per call
# on 2 cores, and start runs it twice).
storage_tool() {
  env -u UOP_KAFKA_HEAP_OPTS -u UOP_KAFKA_LOG4J UOP_KAFKA_JAVA_OPTS=-XX:TieredStopAtLevel=1 \
    "$UOP_KAFKA_HERE/kafka-tool.sh" kafka.tools.StorageTool "$@"
}

format_storage() {
  local dir="$1" id
  # Kafka's own cluster id format (base64url of 16 random bytes), made by Kafka itself.
  id="$(storage_tool random-uuid)"
  printf '%s\n' "$id" >"$dir/cluster.id"
  # --standalone: this controller is the whole (dynamic, kraft.version 1) quorum; it goes
  # with controller.quorum.bootstrap.servers (4.2+ rejects it with controller.quorum.voters).
  storage_tool format -t "$id" \
    -c "$dir/server.properties" --standalone --ignore-formatted >"$dir/logs/format.out" 2>&1 ||
    { cat "$dir/logs/format.out" >&2; kafka_die "storage format failed in $dir"; }
}

# On failure: the ERROR/FATAL lines first (a failing broker logs its cause, then ~40 lines of
# orderly shutdown that would push the cause out of a plain tail), then the tail.
show_log_tail() {
  local dir="$1" f
  for f in "$dir/logs/kafka.out" "$dir/logs/server.log"; do
    [[ -s "$f" ]] || continue
    if grep -qE '^\[[^]]*\] (ERROR|FATAL)' "$f"; then
      echo "---- last errors in $f" >&2
      grep -E -A 3 '^\[[^]]*\] (ERROR|FATAL)' "$f" | tail -n 20 >&2
    fi
    echo "---- tail of $f" >&2
    tail -n 30 "$f" >&2
  done
}

# Starts the JVM on DIR's existing config/data and waits until the broker answers.
# Returns 0 when ready, 3 when the broker failed because a port was taken (caller may retry
# with new ports), 1 on any other failure (log tail printed). FRESH=1 (new, empty cluster)
# allows SIGKILL of a broker that failed to bind, instead of waiting seconds for its
# orderly shutdown: its data is wiped before the retry anyway.
launch_and_wait() {
  local dir="$1" fresh="${2:-0}" libs java_bin bootstrap pid deadline
  # Callers test our status, which turns off set -e in here: check each step explicitly.
  libs="$("$UOP_KAFKA_HERE/fetch-kafka.sh")" || return 1
  java_bin="$(find_java)" || kafka_die "no java >= 17"
  bootstrap="$HOST:$(cut -d' ' -f1 "$dir/ports")"
  local -a heap_opts extra_opts
  read -r -a heap_opts <<<"${UOP_KAFKA_BROKER_HEAP_OPTS:--Xms256m -Xmx512m}"
  read -r -a extra_opts <<<"${UOP_KAFKA_BROKER_JAVA_OPTS:-}"
  mkdir -p "$dir/logs"
  rm -f "$dir/pid"
  # restart appends to the kept server.log: only what this launch writes counts below.
  local log_offset=0
  [[ -f "$dir/logs/server.log" ]] && log_offset="$(stat -c %s "$dir/logs/server.log")"

  # setsid: the broker must outlive this script and not get the caller's Ctrl-C / process
  # group signals; the inner bash records its own pid and then execs the JVM (same pid).
  # GC flags as in Kafka's kafka-server-start.sh / kafka-run-class.sh.
  (
    cd "$dir"
    # shellcheck disable=SC2016 # $$/$1/$@ belong to the inner bash
    exec setsid bash -c 'echo $$ >"$1.tmp" && mv "$1.tmp" "$1" && shift && exec "$@"' _ \
      "$dir/pid" "$java_bin" "${heap_opts[@]}" \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
      -XX:+ExplicitGCInvokesConcurrent -XX:ErrorFile="$dir/logs/hs_err_%p.log" \
      -Djava.awt.headless=true -Duop.kafka.name="$(cat "$dir/name")" \
      -Dkafka.logs.dir="$dir/logs" -Dlog4j2.configurationFile="$dir/log4j2.properties" \
      "${extra_opts[@]+"${extra_opts[@]}"}" \
      -cp "$libs/*" kafka.Kafka "$dir/server.properties"
  ) </dev/null >>"$dir/logs/kafka.out" 2>&1 &

  deadline=$((SECONDS + START_TIMEOUT))
  while [[ ! -s "$dir/pid" ]] && ((SECONDS < deadline)); do sleep 0.05; done
  pid="$(cat "$dir/pid" 2>/dev/null || true)"
  [[ -n "$pid" ]] || { show_log_tail "$dir"; kafka_log "broker JVM did not start"; return 1; }

  # Ready = our JVM logged "Kafka Server started" (so it did bind its ports: a metadata
  # answer alone could come from whoever else holds the port) AND a metadata request through
  # the PLAINTEXT listener lists the broker. The broker serves requests only after it
  # registered with the controller and caught up with the metadata log, so topics can be
  # created from then on.
  while ((SECONDS < deadline)); do
    if ((fresh)) && tail -c "+$((log_offset + 1))" "$dir/logs/server.log" 2>/dev/null |
      grep 'Address already in use' >/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      if grep -qs 'Address already in use' "$dir/logs/server.log" "$dir/logs/kafka.out"; then
        rm -f "$dir/pid"
        return 3
      fi
      show_log_tail "$dir"
      rm -f "$dir/pid"
      kafka_log "broker exited during start-up ($dir)"
      return 1
    fi
    if tail -c "+$((log_offset + 1))" "$dir/logs/server.log" 2>/dev/null |
      grep 'Kafka Server started' >/dev/null &&
      timeout 10 kcat -L -b "$bootstrap" -m 2 2>/dev/null | grep ' 1 brokers:' >/dev/null; then
      printf '%s\n' "$bootstrap" >"$dir/bootstrap"
      return 0
    fi
    sleep 0.5
  done
  show_log_tail "$dir"
  kafka_log "broker did not answer on $bootstrap within ${START_TIMEOUT}s; stopping it"
  stop_broker "$dir"
  return 1
}

stop_broker() {
  local dir="$1" pid deadline
  if ! pid="$(running_pid "$dir")"; then
    rm -f "$dir/pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kafka_log "broker $pid did not stop within ${STOP_TIMEOUT}s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$dir/pid"
}

write_port_file() {
  local file="$1" port="$2"
  [[ -n "$file" ]] || return 0
  printf '%s\n' "$port" >"$file.tmp.$$"
  mv "$file.tmp.$$" "$file"
}

abs_dir() {
  mkdir -p "$1"
  (cd "$1" && pwd)
}

cmd_start() {
  (($# >= 2)) || usage
  local name="$1" dir port_file="" attempt rc ports pid
  dir="$(abs_dir "$2")"
  shift 2
  local -a props=() extras=()
  while (($#)); do
    case "$1" in
      --port-file) (($# >= 2)) || usage; port_file="$2"; shift 2 ;;
      --prop) (($# >= 2)) || usage; props+=("$2"); shift 2 ;;
      --extra-listener)
        (($# >= 2)) || usage
        [[ "$2" =~ ^[A-Z][A-Z0-9_]*=[^=:]+:[0-9]+$ && "${2%%=*}" != PLAINTEXT && "${2%%=*}" != CONTROLLER ]] ||
          kafka_die "--extra-listener wants LNAME=HOST:PORT (LNAME upper case, not PLAINTEXT or CONTROLLER), not '$2'"
        extras+=("$2")
        shift 2
        ;;
      *) usage ;;
    esac
  done
  if pid="$(running_pid "$dir")"; then
    kafka_die "a broker (pid $pid) is already running in $dir; stop it first"
  fi
  "$UOP_KAFKA_HERE/fetch-kafka.sh" >/dev/null

  printf '%s\n' "$name" >"$dir/name"
  for attempt in 1 2 3 4 5; do
    # A fresh cluster each time: old data would carry the previous cluster id and ports.
    rm -rf "$dir/data" "$dir/logs" "$dir/bootstrap"
    mkdir -p "$dir/data" "$dir/logs"
    rm -f "$dir"/listener.*
    local -a all_ports
    read -r -a all_ports <<<"$(free_ports $((2 + ${#extras[@]})))"
    ports="${all_ports[0]} ${all_ports[1]}"
    printf '%s\n' "$ports" >"$dir/ports"
    EXTRA_LISTENERS=()
    local i
    for ((i = 0; i < ${#extras[@]}; i++)); do
      EXTRA_LISTENERS+=("${extras[i]%%=*} ${extras[i]#*=} ${all_ports[i + 2]}")
    done
    # shellcheck disable=SC2086 # two words on purpose: broker port, controller port
    write_config "$dir" $ports "${props[@]+"${props[@]}"}"
    format_storage "$dir"
    rc=0
    launch_and_wait "$dir" 1 || rc=$?
    case "$rc" in
      0)
        write_port_file "$port_file" "${ports%% *}"
        cat "$dir/bootstrap"
        return 0
        ;;
      3) kafka_log "port collision (ports $ports), retrying with new ports (attempt $attempt)" ;;
      *) exit 1 ;;
    esac
  done
  show_log_tail "$dir"
  kafka_die "could not start: ports kept colliding"
}

cmd_restart() {
  (($# == 1)) || usage
  local dir rc=0
  dir="$(abs_dir "$1")"
  [[ -f "$dir/server.properties" && -f "$dir/data/meta.properties" ]] ||
    kafka_die "$dir holds no formatted cluster; use start"
  stop_broker "$dir"
  launch_and_wait "$dir" || rc=$?
  case "$rc" in
    0) cat "$dir/bootstrap" ;;
    3) show_log_tail "$dir"; kafka_die "broker or controller port ($(cat "$dir/ports")) is taken by another process" ;;
    *) exit 1 ;;
  esac
}

cmd_stop() {
  (($# == 1)) || usage
  [[ -d "$1" ]] || return 0
  stop_broker "$(abs_dir "$1")"
}

cmd_status() {
  (($# == 1)) || usage
  local dir pid
  [[ -d "$1" ]] || { echo stopped; exit 1; }
  dir="$(abs_dir "$1")"
  if pid="$(running_pid "$dir")"; then
    echo "running $pid $(cat "$dir/bootstrap" 2>/dev/null || echo starting)"
  else
    echo stopped
    exit 1
  fi
}

(($# >= 1)) || usage
command="$1"
shift
case "$command" in
  start) cmd_start "$@" ;;
  restart) cmd_restart "$@" ;;
  stop) cmd_stop "$@" ;;
  status) cmd_status "$@" ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
