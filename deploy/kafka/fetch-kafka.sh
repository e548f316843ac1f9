#!/usr/bin/env bash
# Puts the jars of one pinned Apache Kafka version (broker, KRaft storage tool, CLI tools,
# Connect, MirrorMaker 2, log4j2 + SLF4J binding) into <cache>/<version>/libs/ and prints
# that directory on stdout. Jars come from Maven Central through Maven (deploy/kafka/pom.xml),
# never from a release tarball. Only tests, fault tests and benchmarks use them.
#
# Idempotent: a stamp file written after a complete copy makes later runs return at once.
# Cache root: $UOP_KAFKA_CACHE, default <repo>/.cache/kafka.
# Installs openjdk-17-jdk-headless and maven with apt when java >= 17 or mvn is missing.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

version="$(kafka_version)"
libs="$(kafka_libs_dir)"
vdir="$(dirname "$libs")"
stamp="$vdir/.complete"
# The stamp records the POM's hash, so editing the POM (e.g. the log4j version) refetches.
want="$version $(sha256sum "$UOP_KAFKA_POM" | cut -d' ' -f1)"

stamp_ok() { [[ -f "$stamp" && -d "$libs" && "$(cat "$stamp")" == "$want" ]]; }

# Fast path: nothing to do (java is checked too, because callers go on to run the jars).
if stamp_ok && find_java >/dev/null; then
  printf '%s\n' "$libs"
  exit 0
fi

# Java 17 + Maven from Debian's archive, only for what is missing. sudo only when not root.
ensure_tools() {
  local -a pkgs=() sudo_cmd=()
  find_java >/dev/null || pkgs+=(openjdk-17-jdk-headless)
  command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
  ((${#pkgs[@]} == 0)) && return 0
  [[ "$(id -u)" -ne 0 ]] && sudo_cmd=(sudo)
  kafka_log "installing ${pkgs[*]} with apt-get"
  local log
  log="$(mktemp)"
  if ! { "${sudo_cmd[@]+"${sudo_cmd[@]}"}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    "${sudo_cmd[@]+"${sudo_cmd[@]}"}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${pkgs[@]}"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -f "$log"
    kafka_die "apt-get install ${pkgs[*]} failed"
  fi
  rm -f "$log"
  find_java >/dev/null || kafka_die "no java >= 17 found after installing openjdk-17-jdk-headless"
  command -v mvn >/dev/null 2>&1 || kafka_die "no mvn on PATH after installing maven"
}
ensure_tools

mkdir -p "$vdir"
# Serialise concurrent fetches (e.g. two test processes starting clusters at once); the
# loser of the race finds the stamp written and returns.
exec 9>"$vdir/.lock"
flock 9
if stamp_ok; then
  printf '%s\n' "$libs"
  exit 0
fi

# Copy into a temp dir and rename it only when Maven succeeded and the jars we rely on are
# there, so an interrupted fetch never leaves a half-filled libs/ that looks usable.
tmp="$(mktemp -d "$vdir/libs.tmp.XXXXXX")"
chmod 755 "$tmp" # mktemp -d makes it 0700; the cache may be shared with other users' tests
trap 'rm -rf "$tmp"' EXIT
log="$vdir/fetch.log"
kafka_log "fetching Kafka $version jars with Maven into $libs"
# Run Maven on the JDK we found so a JAVA_HOME pointing at an old JDK does not break it.
java_bin="$(find_java)"
if ! JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$java_bin")")")" \
  mvn -B -q -ntp -Dstyle.color=never -f "$UOP_KAFKA_POM" dependency:copy-dependencies \
  -Dkafka.libs.dir="$tmp" >"$log" 2>&1; then
  grep -E '\[(ERROR|WARNING)\]' "$log" | head -n 20 >&2 || tail -n 30 "$log" >&2
  kafka_die "mvn dependency:copy-dependencies failed (full log: $log)"
fi

for jar in "kafka_2.13-$version.jar" "kafka-tools-$version.jar" "connect-mirror-$version.jar" \
  "connect-runtime-$version.jar" "kafka-clients-$version.jar" "slf4j-api-1.7.36.jar"; do
  [[ -f "$tmp/$jar" ]] || kafka_die "Maven finished but $jar is missing (log: $log)"
done
for pattern in 'log4j-core-*.jar' 'log4j-slf4j-impl-*.jar'; do
  compgen -G "$tmp/$pattern" >/dev/null || kafka_die "Maven finished but no $pattern (log: $log)"
done

rm -rf "$libs"
mv "$tmp" "$libs"
trap - EXIT
printf '%s\n' "$want" >"$stamp"
kafka_log "done: $(find "$libs" -name '*.jar' | wc -l) jars"
printf '%s\n' "$libs"
