#!/usr/bin/env bash
# Installs every system package uop-federation needs to build, test and demo, from Debian's
# archive. Idempotent and quiet: does nothing when all packages are already present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config ccache git
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev libgrpc-dev
  librdkafka-dev libabsl-dev libssl-dev openssl libyaml-cpp-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  libcli11-dev libcpp-httplib-dev nlohmann-json3-dev libsimdjson-dev libboost-dev
  kcat curl python3 python3-pytest python3-grpcio python3-openssl procps clang-format clang-14 clang-tidy-14
  libmosquitto-dev mosquitto mosquitto-clients python3-protobuf
)
if [[ "${1:-}" == "--kafka" ]]; then
  packages+=(openjdk-17-jdk-headless maven gdb)  # gdb: the harness reports where a hung process waits
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Java and Maven may come from elsewhere (e.g. a Temurin JDK); accept any working ones.
if [[ "${1:-}" == "--kafka" ]]; then
  filtered=()
  for p in "${missing[@]}"; do
    case "$p" in
      openjdk-17-jdk-headless) java -version 2>&1 | grep -qE 'version "(1[7-9]|2[0-9])' || filtered+=("$p") ;;
      maven) command -v mvn >/dev/null || filtered+=("$p") ;;
      *) filtered+=("$p") ;;
    esac
  done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq >/dev/null
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
