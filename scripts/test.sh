#!/usr/bin/env bash
# The README's test command: installs what is missing, builds everything, runs every test.
# Tests that need a GPU skip with a message when there is none.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
BUILD_DIR=${KVC_BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${KVC_JOBS:-$(nproc)}" --timeout 900
