#!/usr/bin/env bash
# Builds what the benchmark runs (uopd, uopctl and the bench/ tools), then runs it:
#   bench/run.sh [bench/run.py options]      e.g. bench/run.sh --records 500000
# Results: bench/results/latest.{json,md} (and a timestamped copy). See bench/README.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${UOP_BUILD_DIR:-$root/build}"
if [[ ! -f "$build/build.ninja" ]]; then
  cmake --preset default -S "$root" >/dev/null
fi
# Another build in the same tree (a colleague's ninja) must finish first.
while pgrep -x ninja >/dev/null; do sleep 5; done
ninja -C "$build" -j2 uopd uopctl raw_pipe latency_probe load_gen topic_watch delay_proxy
"$root/deploy/kafka/fetch-kafka.sh" >/dev/null
exec python3 "$root/bench/run.py" --bin "$build/bin" "$@"
