#!/usr/bin/env bash
# Prints, one per line and sorted, the Debian/Ubuntu packages that hold the shared libraries the
# given binaries load (ldd, then dpkg -S on each resolved path). The runtime image installs
# exactly these, so it follows the binaries when their dependencies change.
# Usage: docker/runtime_packages.sh [--unowned FILE] BINARY...
#   --unowned FILE  libraries that no package owns (e.g. a CUDA toolkit installed outside the
#                   package manager) are written to FILE, one path a line as ldd found it
#                   (its file name is the name the loader asks for), for the caller to copy
#                   into the image; without it they are an error.
# Fails when a binary is missing, a library is not found, or (without --unowned) a library
# belongs to no package. The NVIDIA driver's own libraries are skipped (see below).
set -euo pipefail

unowned_file=""
if [ "${1:-}" = --unowned ]; then
  unowned_file=${2:?--unowned needs a file}
  shift 2
  : >"$unowned_file"
fi
if [ $# -eq 0 ]; then
  echo "usage: $0 [--unowned FILE] BINARY..." >&2
  exit 2
fi

declare -A packages=()
for bin in "$@"; do
  if [ ! -x "$bin" ]; then
    echo "runtime_packages: $bin is not an executable file" >&2
    exit 1
  fi
  # The NVIDIA driver's libraries (libcuda, libnvidia-*) are not packaged in the image: the
  # NVIDIA container toolkit mounts the host's at run time, so they are left out here.
  ldd_out=$(ldd "$bin" | grep -Ev '^\s*(libcuda\.so|libnvidia-)')
  if grep -q "not found" <<<"$ldd_out"; then
    echo "runtime_packages: $bin has unresolved libraries:" >&2
    grep "not found" <<<"$ldd_out" >&2
    exit 1
  fi
  # Lines look like "libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x...)" or
  # "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
  while read -r lib; do
    [ -n "$lib" ] || continue
    real=$(readlink -f "$lib")
    owner=""
    # dpkg records the path a package shipped; with merged /usr that may be /lib or /usr/lib,
    # and the name may be the symlink or its target.
    for candidate in "$lib" "$real" "/usr${lib}" "/usr${real}" "${lib#/usr}" "${real#/usr}"; do
      if owner=$(dpkg -S "$candidate" 2>/dev/null | head -n1); then
        [ -n "$owner" ] && break
      fi
    done
    if [ -z "$owner" ]; then
      if [ -n "$unowned_file" ]; then
        grep -qxF "$lib" "$unowned_file" || echo "$lib" >>"$unowned_file"
        continue
      fi
      echo "runtime_packages: no package owns $lib (from $bin)" >&2
      exit 1
    fi
    pkg=${owner%%: *}
    pkg=${pkg%%:*}  # drop the architecture qualifier (libfoo1:amd64)
    packages[$pkg]=1
  done < <(awk '/=>/ {print $3; next} /^\s*\// {print $1}' <<<"$ldd_out")
done

printf '%s\n' "${!packages[@]}" | sort
