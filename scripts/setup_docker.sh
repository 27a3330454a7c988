#!/usr/bin/env bash
# Installs the Debian packages the docker-compose tests and the CI image build need: the Docker
# daemon (docker.io), docker-compose (v1) and debootstrap for the registry-free base image.
# Idempotent: packages already present are skipped, and apt is not touched when nothing is missing.
# Usage: scripts/setup_docker.sh     (needs root, or sudo on PATH)
set -euo pipefail

PACKAGES=(docker.io docker-compose debootstrap curl)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup_docker: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup_docker: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends keeps out the recommended extras (e.g. cgroupfs-mount, git helpers);
# the daemon, containerd, runc and tini come in as dependencies.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup_docker: done"
