#!/usr/bin/env bash
# Configures and builds kvcompact in $KVC_BUILD_DIR (default: build). Extra arguments go to the
# build tool (e.g. target names). Installs missing Debian packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD_DIR=${KVC_BUILD_DIR:-build}
JOBS=${KVC_JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -G Ninja ${KVC_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS" ${1:+--target "$@"}
