#!/usr/bin/env bash
# End-to-end check of the Kafka test tooling in deploy/kafka, the same steps that were run
# by hand to verify it (see docs/kafka-from-maven.md): fetch jars, two single-node KRaft
# clusters at once, a 3-partition topic, kcat produce/consume, a transactional write,
# restart of one broker with its data, MirrorMaker 2 helsinki -> tallinn, stop everything.
# Prints step timings and a closing "N passed, N failed" line; exit 0 only if all passed.
# Needs ~2 GB of memory and takes about a minute on 2 cores. Work dir: $UOP_KAFKA_SMOKE_DIR
# (default: a new temp dir, removed on success, kept with all logs on failure).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cluster="$here/kafka-cluster.sh"
tool="$here/kafka-tool.sh"
work="${UOP_KAFKA_SMOKE_DIR:-$(mktemp -d /tmp/uop-kafka-smoke.XXXXXX)}"
mkdir -p "$work"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "PASS $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
check() { # check DESCRIPTION COMMAND...
  local what="$1"
  shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Whatever happens, leave no JVM behind: MM2 first (it talks to both), then the brokers.
cleanup() {
  local pid
  if [[ -s "$work/mm2.pid" ]]; then
    pid="$(cat "$work/mm2.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  "$cluster" stop "$work/helsinki" || true
  "$cluster" stop "$work/tallinn" || true
}
trap cleanup EXIT

# Counts the records in a topic (from the start to the current end).
count() { kcat -C -b "$1" -t "$2" -e -q "${@:3}" 2>/dev/null | wc -l; }

t="$(now)"
libs="$("$here/fetch-kafka.sh")"
echo "fetch: $(since "$t") s ($libs)"

t="$(now)"
"$cluster" start helsinki "$work/helsinki" >"$work/helsinki.out" 2>"$work/helsinki.err" &
h_job=$!
"$cluster" start tallinn "$work/tallinn" --port-file "$work/tallinn.port" \
  >"$work/tallinn.out" 2>"$work/tallinn.err" || true
wait "$h_job" || true
echo "start two clusters in parallel: $(since "$t") s"
H="$(cat "$work/helsinki.out" 2>/dev/null || true)"
T="$(cat "$work/tallinn.out" 2>/dev/null || true)"
if [[ "$H" != 127.0.0.1:* || "$T" != 127.0.0.1:* ]]; then
  bad "both clusters start (see $work/*.err)"
  cat "$work/helsinki.err" "$work/tallinn.err" >&2 || true
  echo "0 passed, $((failed)) failed"
  trap - EXIT
  cleanup
  exit 1
fi
ok "both clusters start ($H, $T)"
check "port file holds the broker port" [ "$(cat "$work/tallinn.port")" = "${T##*:}" ]
check "status reports running" "$cluster" status "$work/helsinki"

t="$(now)"
"$tool" org.apache.kafka.tools.TopicCommand --bootstrap-server "$H" --create --topic orders \
  --partitions 3 --replication-factor 1 >/dev/null
echo "TopicCommand --create: $(since "$t") s"
check "topic has 3 partitions" bash -c "'$tool' org.apache.kafka.tools.TopicCommand \
  --bootstrap-server '$H' --describe --topic orders | grep -q 'PartitionCount: 3'"
check "auto topic creation is off" bash -c "! kcat -P -b '$H' -t no-such-topic <<<x 2>/dev/null"

seq 1 300 | awk '{ print "key" $1 ":value" $1 }' | kcat -P -b "$H" -t orders -K:
check "kcat: 300 records produced and consumed" [ "$(count "$H" orders)" -eq 300 ]
check "records spread over all 3 partitions" \
  [ "$(kcat -C -b "$H" -t orders -e -q -f '%p\n' | sort -u | wc -l)" -eq 3 ]

"$tool" org.apache.kafka.tools.TopicCommand --bootstrap-server "$H" --create --topic txn \
  --partitions 3 --replication-factor 1 >/dev/null
"$tool" org.apache.kafka.tools.ProducerPerformance --topic txn --num-records 2000 \
  --record-size 100 --throughput -1 --transactional-id smoke-txn --transaction-duration-ms 200 \
  --command-property "bootstrap.servers=$H" >"$work/txn.out" 2>&1 || true
check "transactional producer: 2000 records visible to read_committed" \
  [ "$(count "$H" txn -X isolation.level=read_committed)" -eq 2000 ]

"$tool" org.apache.kafka.tools.TopicCommand --bootstrap-server "$T" --create --topic local \
  --partitions 1 --replication-factor 1 >/dev/null
printf 'a\nb\nc\n' | kcat -P -b "$T" -t local
t="$(now)"
T2="$("$cluster" restart "$work/tallinn" 2>"$work/restart.err" || true)"
echo "restart (stop + start): $(since "$t") s"
check "restart keeps the bootstrap address" [ "$T2" = "$T" ]
check "restart keeps the data" [ "$(count "$T" local)" -eq 3 ]

sed -e "s/@HELSINKI_BOOTSTRAP@/$H/" -e "s/@TALLINN_BOOTSTRAP@/$T/" \
  "$here/mm2-example.properties" >"$work/mm2.properties"
t="$(now)"
# shellcheck disable=SC2016 # $$/$1/$@ belong to the inner bash
UOP_KAFKA_HEAP_OPTS=-Xmx512m UOP_KAFKA_LOG4J="$here/connect-log4j2.properties" \
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$work/mm2.pid" \
  "$tool" org.apache.kafka.connect.mirror.MirrorMaker "$work/mm2.properties" --clusters tallinn \
  </dev/null >"$work/mm2.log" 2>&1 &
echo "smoke:crossed" | kcat -P -b "$H" -t orders -K:
crossed=0
for _ in $(seq 1 180); do
  if kcat -C -b "$T" -t helsinki.orders -e -q -f '%k\n' 2>/dev/null | grep -x smoke >/dev/null; then
    crossed=1
    break
  fi
  sleep 0.5
done
echo "MirrorMaker 2 start to first record in target: $(since "$t") s"
check "MM2 mirrored helsinki.orders into tallinn" [ "$crossed" -eq 1 ]
check "MM2 log has no ERROR" bash -c "! grep -q '] ERROR ' '$work/mm2.log'"

t="$(now)"
cleanup
echo "stop MM2 + both brokers: $(since "$t") s"
check "both brokers stopped" bash -c "! '$cluster' status '$work/helsinki' >/dev/null && \
  ! '$cluster' status '$work/tallinn' >/dev/null"
check "stop keeps the logs" [ -s "$work/helsinki/logs/server.log" ]
trap - EXIT

echo "$passed passed, $failed failed"
if ((failed == 0)) && [[ -z "${UOP_KAFKA_SMOKE_DIR:-}" ]]; then
  rm -rf "$work"
elif ((failed > 0)); then
  echo "logs kept in $work" >&2
fi
((failed == 0))
