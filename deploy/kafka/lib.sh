# shellcheck shell=bash
# Shared helpers for deploy/kafka/*.sh. Sourced, never executed: callers set -euo pipefail.
# Everything here writes diagnostics to stderr only, because the callers' stdout is parsed
# (a libs directory or a bootstrap address).

# Directory of these scripts and the repository root (two levels up), independent of $PWD.
UOP_KAFKA_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
UOP_KAFKA_REPO="$(cd "$UOP_KAFKA_HERE/../.." && pwd)"
UOP_KAFKA_POM="$UOP_KAFKA_HERE/pom.xml"

kafka_log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
kafka_die() { kafka_log "error: $*"; exit 1; }

# The one pinned version lives in pom.xml (<kafka.version>), so the POM and the cache
# folder name can never disagree.
kafka_version() {
  local v
  v="$(sed -n 's:.*<kafka\.version>\([^<]*\)</kafka\.version>.*:\1:p' "$UOP_KAFKA_POM" | head -n 1)"
  [[ -n "$v" ]] || kafka_die "no <kafka.version> in $UOP_KAFKA_POM"
  printf '%s\n' "$v"
}

# Cache root: $UOP_KAFKA_CACHE if set, else <repo>/.cache/kafka (git-ignored).
kafka_cache_root() { printf '%s\n' "${UOP_KAFKA_CACHE:-$UOP_KAFKA_REPO/.cache/kafka}"; }
kafka_libs_dir() { printf '%s/%s/libs\n' "$(kafka_cache_root)" "$(kafka_version)"; }

# Major version of a java binary ("17" from 'openjdk version "17.0.15"', "1" from "1.8.0").
java_major() {
  "$1" -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n 1
}

# Prints a java binary of version >= 17 (Kafka 4.x brokers and Connect need 17), preferring
# $JAVA_HOME, then PATH, then Debian's openjdk-17 (installed by fetch-kafka.sh even when an
# older default java stays first on PATH). Returns 1 if there is none.
find_java() {
  local c m
  local -a candidates=()
  [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME/bin/java")
  if c="$(command -v java 2>/dev/null)"; then candidates+=("$c"); fi
  for c in /usr/lib/jvm/java-17-openjdk-*/bin/java /usr/lib/jvm/*/bin/java; do
    [[ -x "$c" ]] && candidates+=("$c")
  done
  for c in "${candidates[@]+"${candidates[@]}"}"; do
    [[ -x "$c" ]] || continue
    m="$(java_major "$c")"
    if [[ -n "$m" ]] && ((m >= 17)); then
      printf '%s\n' "$c"
      return 0
    fi
  done
  return 1
}
