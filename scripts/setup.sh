#!/usr/bin/env bash
# Installs the Debian packages kvcompact builds and tests against. Idempotent: packages already
# present are skipped, and apt is not touched at all when nothing is missing.
# Usage: scripts/setup.sh [PACKAGE...]   (needs root, or sudo on PATH)
#   With no arguments, the project's build and test packages; with arguments, exactly those
#   (scripts/setup_docker.sh uses this for the docker-compose tests).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-14-dev clang-format
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenblas-dev liblapacke-dev
  libxxhash-dev libzstd-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev
  librocksdb-dev
  libucx-dev ucx-utils
  libthrift-dev thrift-compiler libboost-dev
  gnuplot-nox
)

if [ $# -gt 0 ]; then PACKAGES=("$@"); fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
