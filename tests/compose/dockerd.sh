# shellcheck shell=bash
# Starts and stops a private Docker daemon for the compose tests and the CI image build.
# Sourced by tests/compose/run.sh (and usable by hand: `source tests/compose/dockerd.sh`).
#
# dockerd_start DIR   starts dockerd with its data root, exec root, pidfile, socket and log under
#                     DIR (no iptables rules, no masquerading, no default bridge: the compose
#                     project brings its own network), waits until it answers, and exports
#                     DOCKER_HOST. Fails with the tail of the daemon's log when it does not start.
# dockerd_stop        stops every container it runs, then the daemon (SIGTERM, then SIGKILL after
#                     a grace period), by the pid it recorded; safe to call twice.
#
# Requires root and the docker.io package (scripts/setup_docker.sh).

KVC_DOCKERD_PID=""
KVC_DOCKERD_DIR=""

dockerd_start() {
  local dir=$1
  if [ "$(id -u)" -ne 0 ]; then
    echo "dockerd: error: the Docker daemon must be started as root" >&2
    return 1
  fi
  if ! command -v dockerd >/dev/null; then
    echo "dockerd: error: dockerd is not installed (run scripts/setup_docker.sh)" >&2
    return 1
  fi
  if ! mkdir -p "$dir/data" "$dir/exec"; then
    echo "dockerd: error: cannot create $dir for the daemon's files" >&2
    return 1
  fi
  KVC_DOCKERD_DIR=$dir
  # The socket path is kept short: unix socket paths are limited to 107 bytes.
  local sock="$dir/docker.sock"
  dockerd --iptables=false --ip-masq=false --bridge=none \
    --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
    -H "unix://$sock" >"$dir/dockerd.log" 2>&1 &
  KVC_DOCKERD_PID=$!
  export DOCKER_HOST="unix://$sock"
  local _
  for _ in $(seq 1 120); do
    if ! kill -0 "$KVC_DOCKERD_PID" 2>/dev/null; then
      echo "dockerd: error: the Docker daemon exited while starting; its log:" >&2
      tail -n 40 "$dir/dockerd.log" >&2
      KVC_DOCKERD_PID=""
      return 1
    fi
    if docker version >/dev/null 2>&1; then
      echo "dockerd: running (pid $KVC_DOCKERD_PID, DOCKER_HOST=$DOCKER_HOST)"
      return 0
    fi
    sleep 0.5
  done
  echo "dockerd: error: the Docker daemon did not answer within 60 s; its log:" >&2
  tail -n 40 "$dir/dockerd.log" >&2
  dockerd_stop
  return 1
}

dockerd_stop() {
  [ -n "$KVC_DOCKERD_PID" ] || return 0
  local pid=$KVC_DOCKERD_PID
  KVC_DOCKERD_PID=""
  if kill -0 "$pid" 2>/dev/null; then
    # Containers first, so none outlives the daemon's shutdown timeout.
    local running
    running=$(docker ps -q 2>/dev/null || true)
    if [ -n "$running" ]; then
      # shellcheck disable=SC2086
      docker kill $running >/dev/null 2>&1 || true
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local _
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "dockerd: daemon $pid did not stop in 30 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  fi
  # The daemon's own containerd (started and tracked by dockerd) stops with it; if it was
  # killed, its containerd pidfile names the process to stop.
  local cpid_file="$KVC_DOCKERD_DIR/exec/containerd/containerd.pid"
  if [ -f "$cpid_file" ]; then
    local cpid
    cpid=$(cat "$cpid_file")
    if [ -n "$cpid" ] && kill -0 "$cpid" 2>/dev/null; then
      kill -TERM "$cpid" 2>/dev/null || true
    fi
  fi
  # Mounts the daemon left under its directory (e.g. the host network namespace it binds under
  # exec/netns) are released, deepest first, so the directory can be removed.
  local m
  while read -r m; do
    umount -l "$m" 2>/dev/null || echo "dockerd: could not unmount $m" >&2
  done < <(awk -v d="$KVC_DOCKERD_DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo |
    sort -r)
  echo "dockerd: stopped (pid $pid)"
}
