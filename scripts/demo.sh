#!/usr/bin/env bash
# The README's main command: builds the CLI, generates a long synthetic KV dump (8B-like heads,
# a few layers) and compacts it offline on the CPU path, printing the fidelity report of
# Attention Matching next to a selection-only baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh kvcompact
BUILD_DIR=${KVC_BUILD_DIR:-build}
CLI="$BUILD_DIR/services/cli/kvcompact"
OUT=${KVC_DEMO_DIR:-var/demo}
TOKENS=${KVC_DEMO_TOKENS:-8192}
mkdir -p "$OUT"
"$CLI" generate --preset small --tokens "$TOKENS" --dtype f16 --seed 7 --out "$OUT/dump.safetensors"
echo "== Attention Matching, 10x =="
"$CLI" compact --in "$OUT/dump.safetensors" --out "$OUT/am.safetensors" --method am --ratio 10
echo "== SnapKV (selection only), 10x =="
"$CLI" compact --in "$OUT/dump.safetensors" --out "$OUT/snapkv.safetensors" --method snapkv --ratio 10
echo "outputs in $OUT"
