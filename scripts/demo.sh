#!/usr/bin/env bash
# The README's main command. It builds kvcompactd and the kvcompact CLI, generates a long
# synthetic KV dump (8192 tokens, 4 layers, 4 KV heads, 16 query heads, head_dim 64, f16), then:
#   1. compacts it offline on the CPU path (Attention Matching and SnapKV, 10x) with fidelity;
#   2. starts a worker on embedded defaults (data under var/demo/worker, CPU path), sends the dump
#      to it from the CLI (`put`), and shows the stored entry being found (`lookup`) and reused
#      (`fetch`), then stops the worker.
# Ports: KVC_DEMO_PORT (Thrift, default 7400), +1 UCX, +2 HTTP.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh kvcompact kvcompactd
BUILD_DIR=${KVC_BUILD_DIR:-build}
CLI="$BUILD_DIR/services/cli/kvcompact"
WORKER="$BUILD_DIR/services/worker/kvcompactd"
OUT=${KVC_DEMO_DIR:-var/demo}
TOKENS=${KVC_DEMO_TOKENS:-8192}
PORT=${KVC_DEMO_PORT:-7400}
mkdir -p "$OUT"
"$CLI" generate --preset small --tokens "$TOKENS" --dtype f16 --seed 7 --out "$OUT/dump.safetensors"

echo "== offline: Attention Matching, 10x =="
"$CLI" compact --in "$OUT/dump.safetensors" --out "$OUT/am.safetensors" --method am --ratio 10
echo "== offline: SnapKV (selection only), 10x =="
"$CLI" compact --in "$OUT/dump.safetensors" --out "$OUT/snapkv.safetensors" --method snapkv --ratio 10

echo "== service: kvcompactd on 127.0.0.1:$PORT (data in $OUT/worker) =="
rm -rf "$OUT/worker"
"$WORKER" --listen 127.0.0.1 --data-dir "$OUT/worker" --thrift-port "$PORT" \
  --ucx-port $((PORT + 1)) --http-port $((PORT + 2)) > "$OUT/worker.log" 2>&1 &
worker_pid=$!
trap 'kill "$worker_pid" 2>/dev/null; wait "$worker_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q "kvcompactd ready" "$OUT/worker.log" && break
  kill -0 "$worker_pid" 2>/dev/null || { cat "$OUT/worker.log" >&2; exit 1; }
  sleep 0.1
done
grep "kvcompactd ready" "$OUT/worker.log"
W="127.0.0.1:$PORT"
echo "-- put: upload the dump, compact it with AM at 10x, store it"
"$CLI" put --workers "$W" --in "$OUT/dump.safetensors" --method am --ratio 10
echo "-- lookup: the same prefix is now stored"
"$CLI" lookup --workers "$W" --in "$OUT/dump.safetensors" --method am --ratio 10
echo "-- fetch: reuse the stored compacted cache instead of recomputing it"
"$CLI" fetch --workers "$W" --in "$OUT/dump.safetensors" --method am --ratio 10 \
  --out "$OUT/fetched.safetensors"
echo "-- worker stats"
"$CLI" stats --workers "$W"
echo "outputs in $OUT"
