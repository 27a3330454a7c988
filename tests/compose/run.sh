#!/usr/bin/env bash
# docker-compose integration tests: three kvcompactd workers and a client container, the
# deployment of docker/docker-compose.yml, run on a private Docker daemon.
#
# What it does:
#   1. starts its own dockerd (no iptables, no masquerading, data root, socket and pidfile in a
#      temporary directory) and exports DOCKER_HOST; fails, never skips, when it cannot;
#   2. builds the image without a registry: a debootstrap bookworm base with the binaries'
#      runtime libraries (docker/build_base.sh, cached under KVC_ROOTFS_CACHE), then
#      docker/Dockerfile.ci with the binaries of BUILD_DIR (nothing is compiled in a container);
#   3. `docker-compose up -d`, waits for every worker to be healthy, and checks: the image's
#      settings; /healthz and /metrics; a put-then-fetch round trip through each worker; prefix
#      reuse across clients; `docker kill` of a worker under load (clients fail over, and after
#      `docker start` every acknowledged entry is there); `docker pause` of a worker (a hung
#      worker: budgets and failover hold); `docker network disconnect` of a worker (deadlines
#      and failover hold, then it serves again after reconnecting);
#   4. `docker-compose down`, then stops the daemon and everything it started, by pid (trap on
#      EXIT, also on failure).
# Prints "N passed, M failed" last; exits non-zero when any check failed or the setup broke.
#
# Usage: tests/compose/run.sh [BUILD_DIR]
#   BUILD_DIR  build tree with services/worker/kvcompactd and services/cli/kvcompact (built
#              here first if out of date). Default: $KVC_BUILD_DIR or build.
# Environment: KVC_JOBS (build jobs, default 2), KVC_ROOTFS_CACHE (see docker/build_base.sh),
#              KVC_COMPOSE_KEEP=1 keeps the temporary directory (daemon log, client logs).
# Needs root (dockerd, debootstrap) and the packages of scripts/setup_docker.sh (installed here).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
BUILD_DIR=${1:-${KVC_BUILD_DIR:-build}}
JOBS=${KVC_JOBS:-2}
PROJECT=kvcci$$
BASE_IMAGE=kvcompact-base:bookworm
IMAGE=kvcompact:ci
COMPOSE_FILE="$REPO/docker/docker-compose.yml"
NETWORK="${PROJECT}_kvc"
WORKERS="worker1:7400,worker2:7400,worker3:7400"
start_time=$(date +%s)

# shellcheck source=tests/compose/dockerd.sh
source "$REPO/tests/compose/dockerd.sh"
# shellcheck source=tests/compose/checks.sh
source "$REPO/tests/compose/checks.sh"
# shellcheck source=tests/compose/client_checks.sh
source "$REPO/tests/compose/client_checks.sh"

log() { echo "[compose $(( $(date +%s) - start_time ))s] $*"; }
die() { echo "compose: error: $*" >&2; exit 1; }

# --- cleanup: everything started here is stopped here ----------------------------------------
TMP=""
COMPOSE_UP=0
BG_CONTAINERS=()  # one-off client containers (docker-compose run)
# teardown KEEP: removes one-off containers, brings the project down, stops the daemon, and
# removes the temporary directory unless KEEP is 1 (then only the daemon's data root goes).
teardown() {
  local keep=$1 c
  for c in "${BG_CONTAINERS[@]}"; do
    docker rm -f "$c" >/dev/null 2>&1
  done
  BG_CONTAINERS=()
  if [ "$COMPOSE_UP" -eq 1 ]; then
    log "docker-compose down"
    compose down -v --remove-orphans >/dev/null 2>&1
    COMPOSE_UP=0
  fi
  dockerd_stop
  if [ -n "$TMP" ]; then
    if [ "$keep" = 1 ] || [ "${KVC_COMPOSE_KEEP:-0}" = 1 ]; then
      # The daemon's data root (images, layers) is large and no longer needed.
      rm -rf "$TMP/dockerd/data"
      echo "compose: logs kept in $TMP"
    else
      rm -rf "$TMP"
    fi
    TMP=""
  fi
}
cleanup() {
  local rc=$?
  set +e
  teardown "$([ "$rc" -ne 0 ] && echo 1 || echo 0)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

compose() {
  KVC_IMAGE=$IMAGE docker-compose -p "$PROJECT" -f "$COMPOSE_FILE" "$@"
}
# The container id of a compose service.
cid() { compose ps -q "$1"; }

# --- 1. prerequisites, binaries, daemon -------------------------------------------------------
bash scripts/setup_docker.sh
[ -f "$BUILD_DIR/build.ninja" ] || [ -f "$BUILD_DIR/Makefile" ] ||
  die "no build tree at $BUILD_DIR (run scripts/build.sh, or pass the build directory)"
log "bringing kvcompactd and kvcompact up to date in $BUILD_DIR"
cmake --build "$BUILD_DIR" -j "$JOBS" --target kvcompactd kvcompact >/dev/null
KVCOMPACTD="$BUILD_DIR/services/worker/kvcompactd"
KVCOMPACT="$BUILD_DIR/services/cli/kvcompact"
[ -x "$KVCOMPACTD" ] || die "$KVCOMPACTD was not built"
[ -x "$KVCOMPACT" ] || die "$KVCOMPACT was not built"

TMP=$(mktemp -d /tmp/kvc-compose.XXXXXX)
dockerd_start "$TMP/dockerd" ||
  die "the Docker daemon could not start (log above); the compose tests need it and do not skip"
export DOCKER_BUILDKIT=0  # the classic builder: no buildx plugin is needed

# --- 2. images --------------------------------------------------------------------------------
log "runtime packages of the binaries"
context="$TMP/context"
mkdir -p "$context/install/bin" "$context/lib"
docker/runtime_packages.sh --unowned "$TMP/unowned-libs.txt" "$KVCOMPACTD" "$KVCOMPACT" \
  >"$TMP/runtime-packages.txt"
log "base image packages: $(paste -sd' ' "$TMP/runtime-packages.txt")"
bash docker/build_base.sh "$BASE_IMAGE" "$TMP/runtime-packages.txt"
# Libraries no Debian package provides (a CUDA toolkit from NVIDIA's installer) go in as files.
while read -r lib; do
  [ -n "$lib" ] || continue
  cp -L "$lib" "$context/lib/$(basename "$lib")"
done <"$TMP/unowned-libs.txt"
if [ -s "$TMP/unowned-libs.txt" ]; then
  log "bundled libraries: $(du -sh "$context/lib" | cut -f1):" \
    "$(xargs -n1 basename <"$TMP/unowned-libs.txt" | paste -sd' ')"
fi

strip --strip-debug -o "$context/install/bin/kvcompactd" "$KVCOMPACTD"
strip --strip-debug -o "$context/install/bin/kvcompact" "$KVCOMPACT"
cp "$TMP/runtime-packages.txt" docker/install_runtime.sh docker/healthcheck.sh \
  docker/entrypoint.sh "$context/install/"
cp docker/Dockerfile.ci "$context/"
log "building $IMAGE from docker/Dockerfile.ci"
docker build -q -f "$context/Dockerfile.ci" --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" \
  "$context" >"$TMP/image-build.log" 2>&1 ||
  { cat "$TMP/image-build.log" >&2; die "image build failed"; }

# --- 3. the checks ----------------------------------------------------------------------------
check_image

# Free host ports for the workers' published HTTP endpoints.
read -r p1 p2 p3 < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
export KVC_WORKER1_HTTP_PORT=$p1 KVC_WORKER2_HTTP_PORT=$p2 KVC_WORKER3_HTTP_PORT=$p3
declare -A HTTP_PORT=([worker1]=$p1 [worker2]=$p2 [worker3]=$p3)

log "docker-compose up -d (project $PROJECT)"
COMPOSE_UP=1
compose up -d --no-build >"$TMP/compose-up.log" 2>&1 ||
  { cat "$TMP/compose-up.log" >&2; die "docker-compose up failed"; }
CLIENT=$(cid test-client)
[ -n "$CLIENT" ] || die "no test-client container"

check_healthy_all
check_http
check_round_trips
check_metrics_counted
check_prefix_reuse
check_kill_under_load
check_pause
check_partition

log "docker-compose down"
compose down -v --remove-orphans >"$TMP/compose-down.log" 2>&1 || cat "$TMP/compose-down.log" >&2
COMPOSE_UP=0
run_check "compose down leaves no containers, networks or volumes of the project" \
  compose_gone

teardown "$([ "$FAILED" -gt 0 ] && echo 1 || echo 0)"
log "total $(( $(date +%s) - start_time ))s"
summary
