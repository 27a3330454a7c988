#!/usr/bin/env bash
# Packs the GPU tests and benchmarks for a machine that has a GPU and the CUDA toolkit but none of
# the project's Debian libraries: builds them (Release, sm_90, no services) in $KVC_GPU_BUILD_DIR,
# strips them, and copies the shared libraries they need that are neither CUDA's nor glibc's
# (OpenBLAS, LAPACKE, gfortran...) next to them. The result, gpu-bundle/ (git-ignored), holds
# bin/, lib/ and run.sh (scripts/gpu_run.sh), and is also packed as gpu-bundle.tar.xz (what to
# carry). On the GPU machine: `tar xJf gpu-bundle.tar.xz && gpu-bundle/run.sh OUT_DIR` runs
# every GPU test and benchmark and writes OUT_DIR/gpu_results.md (date, device, figures).
#
# Usage: scripts/gpu_bundle.sh
# Environment: KVC_GPU_BUILD_DIR (default build-gpu), KVC_JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${KVC_GPU_BUILD_DIR:-build-gpu}
OUT=gpu-bundle
TARGETS=(cuda_device_test cuda_compare_test cuda_gpu_backend_test cuda_am_bench methods_bench
         cuda_okdmd_bench)

KVC_BUILD_DIR=$BUILD_DIR \
  KVC_CMAKE_ARGS="-DKVC_WITH_CUDA=ON -DKVC_BUILD_SERVICES=OFF -DCMAKE_BUILD_TYPE=Release" \
  bash scripts/build.sh "${TARGETS[@]}"

rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/lib"
for t in "${TARGETS[@]}"; do
  exe=$(find "$BUILD_DIR" -type f -name "$t" -perm -u+x | head -n 1)
  [ -n "$exe" ] || { echo "gpu_bundle: $t was not built" >&2; exit 1; }
  strip --strip-debug -o "$OUT/bin/$t" "$exe"
done
# Libraries from outside the CUDA toolkit and glibc: the GPU machine has CUDA, not these.
for t in "${TARGETS[@]}"; do ldd "$OUT/bin/$t"; done |
  awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -v -E '/cuda|libcudart|libcublas|libcusolver|libcusparse|libnccl|libnvJitLink' |
  grep -v -E '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*)\.so' |
  while read -r lib; do cp -L "$lib" "$OUT/lib/"; done
cp scripts/gpu_run.sh "$OUT/run.sh"
chmod +x "$OUT/run.sh"
# The device tool carries at most 64 MiB: ship the folder as one xz tarball.
tar -cJf "$OUT.tar.xz" "$OUT"
echo "gpu_bundle: $(du -sh "$OUT" | cut -f1) in $OUT/ ($(ls "$OUT/lib" | wc -l) libraries)," \
  "$(du -sh "$OUT.tar.xz" | cut -f1) as $OUT.tar.xz"
