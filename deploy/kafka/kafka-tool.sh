#!/usr/bin/env bash
# Runs one Kafka Java class with the cached classpath of the pinned version, e.g.
#   deploy/kafka/kafka-tool.sh org.apache.kafka.tools.TopicCommand --bootstrap-server B --list
#   deploy/kafka/kafka-tool.sh org.apache.kafka.connect.mirror.MirrorMaker mm2.properties --clusters tallinn
# Fetches the jars first if needed (fast no-op when cached).
# Env: UOP_KAFKA_HEAP_OPTS (default -Xmx256m), UOP_KAFKA_JAVA_OPTS (extra JVM flags, split on
# spaces), UOP_KAFKA_LOG4J (a log4j2 config file; default: WARN+ to stderr).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

(($# >= 1)) || { echo "usage: ${0##*/} CLASS [ARGS...]" >&2; exit 2; }

libs="$("$UOP_KAFKA_HERE/fetch-kafka.sh")"
java_bin="$(find_java)" || kafka_die "no java >= 17"

# Word splitting of these two is intended: they hold several JVM flags.
read -r -a heap_opts <<<"${UOP_KAFKA_HEAP_OPTS:--Xmx256m}"
read -r -a extra_opts <<<"${UOP_KAFKA_JAVA_OPTS:-}"

# The flags kafka-run-class.sh uses for tools; the quoted 'libs/*' is a JVM classpath
# wildcard, not a shell glob.
exec "$java_bin" "${heap_opts[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
  -Djava.awt.headless=true \
  -Dlog4j2.configurationFile="${UOP_KAFKA_LOG4J:-$UOP_KAFKA_HERE/tools-log4j2.properties}" \
  "${extra_opts[@]+"${extra_opts[@]}"}" \
  -cp "$libs/*" "$@"
