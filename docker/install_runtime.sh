#!/bin/bash
# Prepares the runtime image; run by both docker/Dockerfile and docker/Dockerfile.ci so the two
# images are alike. Run as root inside the image being built, from the directory holding:
#   bin/kvcompactd, bin/kvcompact   the binaries
#   runtime-packages.txt            their library packages (docker/runtime_packages.sh)
#   healthcheck.sh, entrypoint.sh
# Installs the packages with apt only when some are missing (the CI base image has them all and
# no network), registers /usr/local/lib/kvcompact with the loader when libraries were copied
# there (Dockerfile.ci), checks that every library resolves, and creates the non-root user
# "kvcompact" (uid/gid 10001) owning /var/lib/kvcompact/data.
set -euo pipefail

missing=()
while read -r p; do
  [ -n "$p" ] || continue
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done < runtime-packages.txt
if [ ${#missing[@]} -gt 0 ]; then
  echo "install_runtime: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  rm -rf /var/lib/apt/lists/*
fi

if [ -n "$(ls -A /usr/local/lib/kvcompact 2>/dev/null)" ]; then
  echo "install_runtime: bundled libraries: $(find /usr/local/lib/kvcompact -type f -printf '%f ')"
  echo /usr/local/lib/kvcompact >/etc/ld.so.conf.d/kvcompact.conf
  ldconfig
fi

install -m 0755 bin/kvcompactd bin/kvcompact /usr/local/bin/
install -m 0755 healthcheck.sh /usr/local/bin/kvcompact-healthcheck
install -m 0755 entrypoint.sh /usr/local/bin/kvcompact-entrypoint

for b in /usr/local/bin/kvcompactd /usr/local/bin/kvcompact; do
  if ldd "$b" | grep "not found"; then
    echo "install_runtime: $b has unresolved libraries (above)" >&2
    exit 1
  fi
done
/usr/local/bin/kvcompactd --version
/usr/local/bin/kvcompact --help >/dev/null

groupadd --system --gid 10001 kvcompact
useradd --system --uid 10001 --gid kvcompact --home-dir /var/lib/kvcompact \
  --shell /usr/sbin/nologin kvcompact
install -d -o kvcompact -g kvcompact -m 0750 /var/lib/kvcompact /var/lib/kvcompact/data
