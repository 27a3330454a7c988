#!/usr/bin/env bash
# Configures and builds the libFuzzer targets in their own clang build directory, then runs each
# for a bounded time starting from the committed seed corpus. Exits non-zero if a target crashes
# (or leaks, times out, or breaks an invariant); the input that did it is kept in
# BUILD_DIR/fuzz-work/TARGET/artifacts/.
#
# Usage: tests/fuzz/run_fuzz.sh [BUILD_DIR] [SECONDS_PER_TARGET] [TARGET...]
#   BUILD_DIR           default build-fuzz (relative paths are taken from the repository root)
#   SECONDS_PER_TARGET  default 60 (libFuzzer -max_total_time)
#   TARGET              default: safetensors_fuzz config_fuzz
# Environment: KVC_FUZZ_JOBS (build parallelism, default 2).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-build-fuzz}"
seconds="${2:-60}"
shift $(( $# > 2 ? 2 : $# ))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=(safetensors_fuzz config_fuzz); fi
case "$build" in /*) ;; *) build="$root/$build" ;; esac
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -le 0 ]; then
  echo "run_fuzz.sh: SECONDS_PER_TARGET must be a positive integer, got '$seconds'" >&2
  exit 2
fi
for tool in clang clang++ cmake ninja; do
  command -v "$tool" >/dev/null || { echo "run_fuzz.sh: '$tool' not found" >&2; exit 2; }
done

CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja \
  -DKVC_FUZZ=ON -DKVC_BUILD_SERVICES=OFF -DKVC_BUILD_TESTS=OFF -DKVC_WITH_CUDA=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target "${targets[@]}" -j "${KVC_FUZZ_JOBS:-2}"

failed=()
for target in "${targets[@]}"; do
  work="$build/fuzz-work/$target"
  mkdir -p "$work/corpus" "$work/artifacts"
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$work/artifacts/")
  dict="$root/tests/fuzz/${target%_fuzz}.dict"
  [ -f "$dict" ] && args+=(-dict="$dict")
  seeds="$root/tests/fuzz/corpus/$target"
  echo "== $target: ${seconds}s (corpus $work/corpus, seeds $seeds)"
  # New inputs go to the first directory, so the committed seeds stay untouched.
  if "$build/tests/fuzz/$target" "${args[@]}" "$work/corpus" "$seeds" >"$work/log.txt" 2>&1; then
    grep -E "^(stat::|Done )" "$work/log.txt" || true
  else
    echo "!! $target failed; last lines of $work/log.txt:" >&2
    tail -n 40 "$work/log.txt" >&2
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "run_fuzz.sh: findings in: ${failed[*]} (inputs in $build/fuzz-work/*/artifacts/)" >&2
  exit 1
fi
echo "run_fuzz.sh: no findings"
