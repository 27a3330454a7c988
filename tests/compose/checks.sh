# shellcheck shell=bash
# Check bookkeeping and the deployment-level checks of tests/compose/run.sh (sourced by it; uses
# its compose, cid, log, TMP, IMAGE, PROJECT, NETWORK and HTTP_PORT). The checks that drive the
# kvcompact CLI are in client_checks.sh.

PASSED=0
FAILED=0
FAILED_NAMES=()

# pass NAME [DETAIL], fail NAME [DETAIL]: count a check and print its line.
pass() {
  PASSED=$((PASSED + 1))
  echo "PASS: $1${2:+ $2}"
}
fail() {
  FAILED=$((FAILED + 1))
  FAILED_NAMES+=("$1")
  echo "FAIL: $1${2:+ — $2}"
}
# run_check NAME CMD...: passes iff CMD exits 0; CMD's output goes to the log either way.
run_check() {
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}
summary() {
  if [ "$FAILED" -gt 0 ]; then
    echo "failed checks:"
    printf '  %s\n' "${FAILED_NAMES[@]}"
  fi
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}

# --- image ------------------------------------------------------------------------------------

# The block between the "runtime settings" markers of a Dockerfile.
runtime_block() {
  sed -n '/^# --- runtime settings/,/^# --- end of runtime settings/p' "$1" | sed '1d;$d'
}

check_image() {
  local a b
  a=$(runtime_block docker/Dockerfile)
  b=$(runtime_block docker/Dockerfile.ci)
  if [ -n "$a" ] && [ "$a" = "$b" ]; then
    pass "Dockerfile and Dockerfile.ci share the runtime settings"
  else
    fail "Dockerfile and Dockerfile.ci share the runtime settings" "the blocks differ"
    diff <(echo "$a") <(echo "$b") || true
  fi

  local user health ports volumes entry
  user=$(docker image inspect -f '{{.Config.User}}' "$IMAGE")
  health=$(docker image inspect -f '{{json .Config.Healthcheck.Test}}' "$IMAGE")
  ports=$(docker image inspect -f '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}' "$IMAGE")
  volumes=$(docker image inspect -f '{{range $v, $_ := .Config.Volumes}}{{$v}} {{end}}' "$IMAGE")
  entry=$(docker image inspect -f '{{json .Config.Entrypoint}}' "$IMAGE")
  if [ "$user" = kvcompact ] && [[ $health == *kvcompact-healthcheck* ]] &&
     [ "$ports" = "7400/tcp 7401/tcp 7402/tcp " ] &&
     [ "$volumes" = "/var/lib/kvcompact/data " ] && [[ $entry == *kvcompact-entrypoint* ]]; then
    pass "image: user kvcompact, healthcheck, ports 7400-7402, data volume, entrypoint"
  else
    fail "image: user kvcompact, healthcheck, ports 7400-7402, data volume, entrypoint" \
      "user='$user' health=$health ports='$ports' volumes='$volumes' entrypoint=$entry"
  fi

  # Runs as uid 10001, every library resolves, both binaries start.
  local out
  if out=$(docker run --rm --network none --entrypoint bash "$IMAGE" -c \
      'id -u; kvcompactd --version; kvcompact --help | head -n1' 2>&1) &&
     [ "$(head -n1 <<<"$out")" = 10001 ] && grep -q '^kvcompactd ' <<<"$out"; then
    pass "image: binaries run as the non-root user ($(sed -n 2p <<<"$out"))"
  else
    fail "image: binaries run as the non-root user" "$out"
  fi

  # The health probe fails when nothing listens (it must be able to say "unhealthy").
  if docker run --rm --network none --entrypoint kvcompact-healthcheck "$IMAGE" \
      >/dev/null 2>&1; then
    fail "image: health probe fails without a worker"
  else
    pass "image: health probe fails without a worker"
  fi
}

# --- health and HTTP --------------------------------------------------------------------------

# health_of SERVICE: the container's health status ("healthy", "starting", ...) or "missing".
health_of() {
  local id
  id=$(cid "$1")
  [ -n "$id" ] || { echo missing; return; }
  docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id" \
    2>/dev/null || echo missing
}

# wait_healthy SECONDS SERVICE...: 0 once all are healthy, 1 after SECONDS.
wait_healthy() {
  local limit=$1
  shift
  local deadline=$(( $(date +%s) + limit )) s all
  while :; do
    all=1
    for s in "$@"; do
      [ "$(health_of "$s")" = healthy ] || all=0
    done
    [ "$all" -eq 1 ] && return 0
    if [ "$(date +%s)" -ge "$deadline" ]; then
      for s in "$@"; do echo "  $s: $(health_of "$s")"; done
      return 1
    fi
    sleep 1
  done
}

check_healthy_all() {
  log "waiting for the workers' health checks"
  if wait_healthy 120 worker1 worker2 worker3; then
    pass "compose: worker1..3 healthy (Docker HEALTHCHECK on /healthz)"
  else
    fail "compose: worker1..3 healthy (Docker HEALTHCHECK on /healthz)"
    local s
    for s in worker1 worker2 worker3; do compose logs --tail 20 "$s"; done
  fi
  if [ "$(docker inspect -f '{{.State.Running}}' "$CLIENT")" = true ]; then
    pass "compose: test-client running"
  else
    fail "compose: test-client running"
  fi
}

# http_get SERVICE PATH: body of the worker's published HTTP endpoint; fails on a non-2xx code.
http_get() {
  curl -sS --fail --max-time 5 "http://127.0.0.1:${HTTP_PORT[$1]}$2"
}

# metric_sum SERVICE NAME_REGEX: the sum of the samples of matching metrics (0 when none).
metric_sum() {
  http_get "$1" /metrics | awk -v re="^($2)([{ ]|$)" '
    $0 !~ /^#/ && $1 ~ re { sum += $NF } END { printf "%.0f\n", sum + 0 }'
}

check_http() {
  local s body
  for s in worker1 worker2 worker3; do
    if body=$(http_get "$s" /healthz) ; then
      pass "http: $s /healthz answers 200 on 127.0.0.1:${HTTP_PORT[$s]}" \
        "($(head -c 60 <<<"$body" | tr '\n' ' '))"
    else
      fail "http: $s /healthz answers 200 on 127.0.0.1:${HTTP_PORT[$s]}"
    fi
    if body=$(http_get "$s" /metrics) && grep -q '^# TYPE kvc_' <<<"$body" &&
       grep -Eq '^kvc_[a-z_]+(\{[^}]*\})? [0-9.eE+-]+$' <<<"$body"; then
      pass "http: $s /metrics serves Prometheus text" \
        "($(grep -c '^# TYPE kvc_' <<<"$body") kvc_ metrics)"
    else
      fail "http: $s /metrics serves Prometheus text" "$(head -c 300 <<<"${body:-}")"
    fi
  done
}

compose_gone() {
  local c n v
  c=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")
  n=$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")
  v=$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")
  if [ -z "$c$n$v" ]; then return 0; fi
  echo "  left: containers [$c] networks [$n] volumes [$v]"
  return 1
}
