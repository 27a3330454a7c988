#!/usr/bin/env bash
# Runs every GPU test and benchmark of a bundle made by scripts/gpu_bundle.sh, on a machine with
# an NVIDIA GPU and the CUDA runtime libraries, and writes OUT_DIR/gpu_results.md: the date, the
# device, each test program's summary and each benchmark's output. The full logs go to
# OUT_DIR/logs/. Exits non-zero when a test program failed (the benchmarks still run).
#
# Usage: gpu-bundle/run.sh OUT_DIR [--quick]
#   --quick  one layer per benchmark instead of the full 32-layer model (a smoke run).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: run.sh OUT_DIR [--quick]}
quick=${2:-}
mkdir -p "$out/logs"
export LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
report="$out/gpu_results.md"
layers=32
[ "$quick" = --quick ] && layers=1

{
  echo "# GPU results"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n1)"
  echo "- host: $(nproc) CPU threads"
  echo
  echo "## Tests"
} >"$report"

failed=0
for t in cuda_device_test cuda_compare_test cuda_gpu_backend_test; do
  "$here/bin/$t" --gtest_brief=1 >"$out/logs/$t.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || failed=1
  summary=$(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\]' "$out/logs/$t.log" | grep -v '\] [A-Za-z]' |
            paste -sd' ')
  echo "- $t: exit $rc; $summary" >>"$report"
  grep -E '^\[  FAILED  \] [A-Za-z]' "$out/logs/$t.log" | sed 's/^/  - /' >>"$report"
done

bench() {  # bench NAME ARGS...
  local name=$1; shift
  echo >>"$report"
  echo "## $name $*" >>"$report"
  echo '```' >>"$report"
  "$here/bin/$name" "$@" >"$out/logs/$name.$(echo "$*" | tr -c 'a-z0-9' '_').log" 2>&1
  echo "exit $?" >>"$out/logs/$name.status"
  cat "$out/logs/$name.$(echo "$*" | tr -c 'a-z0-9' '_').log" >>"$report"
  echo '```' >>"$report"
}
bench cuda_am_bench --layers "$layers" --queries 4096
bench cuda_am_bench --layers "$layers" --queries 8192 --tokens 61440
bench cuda_am_bench --layers "$layers" --queries 4096 --select omp-fast --cpu-layers 0
bench methods_bench --layers "$layers" --tokens 32768
bench cuda_okdmd_bench --layers "$layers" --tokens 32768
echo "gpu_run: report in $report"
exit $failed
