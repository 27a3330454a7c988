#!/usr/bin/env bash
# Installs the Debian packages the docker-compose tests and the CI image build need: the Docker
# daemon (docker.io), docker-compose (v1), debootstrap for the registry-free base image, and curl.
# Idempotent, like scripts/setup.sh, which does the work (--no-install-recommends keeps out the
# recommended extras; the daemon, containerd, runc and tini come in as dependencies).
# Usage: scripts/setup_docker.sh     (needs root, or sudo on PATH)
set -euo pipefail
exec bash "$(dirname "$0")/setup.sh" docker.io docker-compose debootstrap curl
