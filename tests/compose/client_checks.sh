# shellcheck shell=bash
# The checks of tests/compose/run.sh that drive the kvcompact CLI in the test-client container
# (sourced by it after checks.sh; uses CLIENT, PROJECT, NETWORK, WORKERS, TMP and the helpers
# of run.sh and checks.sh).
#
# Every entry is keyed with --model kvc-compose, so the clients share keys whatever the dumps'
# own metadata says. Dumps come from `kvcompact generate` (tiny preset: 2 layers, 2 KV heads,
# 4 query heads, head_dim 16, f32) on the client's volume.

MODEL=kvc-compose
LAYOUT=2:2:4:16:f32
DUMPS=/var/lib/kvcompact/data
# Each CLI call is bounded from the outside too, so a hung client fails its check, not the run.
CLI_LIMIT=180
# The budget of calls that check what is stored rather than how fast: long enough that a loaded
# CI machine does not turn a slow answer into a miss (the client's lookup default is 2 s,
# shared among its attempts).
PATIENT_MS=30000

# kvc ARGS...: runs `kvcompact ARGS` in the test-client container (stdin stays with the caller:
# callers read their own lists from it).
kvc() { timeout "$CLI_LIMIT" docker exec "$CLIENT" kvcompact "$@" </dev/null; }
# kvc_in CONTAINER ARGS...: the same in another container.
kvc_in() {
  local c=$1
  shift
  timeout "$CLI_LIMIT" docker exec "$c" kvcompact "$@" </dev/null
}
# json_field TEXT KEY: a top-level field of the last JSON object line in TEXT ("" when there is
# none or it lacks the field). TEXT may hold the CLI's stderr notes too, in any order: docker
# exec delivers stdout and stderr as separate streams.
json_field() {
  python3 -c '
import json, sys
v = ""
for line in reversed(sys.argv[1].splitlines()):
    try:
        obj = json.loads(line)
    except ValueError:
        continue
    if isinstance(obj, dict):
        v = obj.get(sys.argv[2], "")
        break
print(str(v).lower() if isinstance(v, bool) else v)' "$1" "$2"
}
# last_msg TEXT [N]: the last N (default 1) lines of TEXT that are not the CLI's "note:" lines.
last_msg() { grep -v '^note: ' <<<"$1" | tail -n "${2:-1}"; }
# ids FIRST LAST: "FIRST,FIRST+1,...,LAST".
ids() { seq -s, "$1" "$2"; }
now_ms() { date +%s%3N; }

# generate NAME SEED TOKENS: a tiny dump at $DUMPS/NAME.safetensors.
generate() {
  kvc generate --out "$DUMPS/$1.safetensors" --preset tiny --seed "$2" --tokens "$3" >/dev/null
}
# generate_many PREFIX COUNT SEED0: dumps PREFIX-1..PREFIX-COUNT of 256 tokens, seeds SEED0+i,
# in one container call.
generate_many() {
  # shellcheck disable=SC2016  # the script expands inside the container
  timeout "$CLI_LIMIT" docker exec "$CLIENT" bash -c '
    set -eu
    for i in $(seq 1 "$2"); do
      kvcompact generate --out "$0/$1-$i.safetensors" --preset tiny --seed $(($3 + i)) \
        --tokens 256 >/dev/null
    done' "$DUMPS" "$1" "$2" "$3" </dev/null
}

# --- round trip through each worker -----------------------------------------------------------

check_round_trips() {
  log "round trip through each worker"
  local w out put_worker transport fetch_transport fetched rc
  # 2048 tokens: 1 MiB of keys and values, so the upload takes the UCX path between containers.
  generate rt 11 2048 || { fail "generate the round-trip dump"; return; }
  for w in worker1 worker2 worker3; do
    if ! out=$(kvc put --workers "$w:7400" --in "$DUMPS/rt.safetensors" --model "$MODEL" \
        --tokens "$(ids 1 2048)" --json 2>"$TMP/put-$w.err"); then
      fail "round trip via $w: put" "$(tail -n3 "$TMP/put-$w.err")"
      continue
    fi
    put_worker=$(json_field "$out" worker)
    transport=$(json_field "$out" transport)
    # The compacted cache is small (inline by default): --ucx required sends it over UCX too.
    if ! out=$(kvc fetch --timeout-ms "$PATIENT_MS" --workers "$w:7400" \
        --in "$DUMPS/rt.safetensors" --model "$MODEL" \
        --tokens "$(ids 1 2048)" --out "$DUMPS/rt-$w.out.safetensors" --ucx required --json \
        2>"$TMP/fetch-$w.err"); then
      fail "round trip via $w: fetch" "$(tail -n3 "$TMP/fetch-$w.err")"
      continue
    fi
    fetched=$(json_field "$out" matched_tokens)
    fetch_transport=$(json_field "$out" transport)
    rc=0
    kvc eval --in "$DUMPS/rt.safetensors" --compacted "$DUMPS/rt-$w.out.safetensors" \
      >"$TMP/eval-$w.out" 2>&1 || rc=$?
    if [ "$put_worker" = "$w:7400" ] && [ "$fetched" = 2048 ] && [ "$rc" -eq 0 ]; then
      pass "round trip via $w: put (upload via $transport) then fetch of all 2048 tokens," \
        "the cache evaluates"
    else
      fail "round trip via $w" "put on '$put_worker', fetched $fetched tokens, eval exit $rc"
    fi
    if [ "$transport" = ucx ] && [ "$fetch_transport" = ucx ]; then
      pass "round trip via $w: the 1 MiB upload and the fetch crossed containers over UCX"
    else
      fail "round trip via $w: the 1 MiB upload and the fetch crossed containers over UCX" \
        "upload via '$transport', fetch via '$fetch_transport'"
    fi
  done
}

check_metrics_counted() {
  local s puts reqs
  for s in worker1 worker2 worker3; do
    puts=$(metric_sum "$s" kvc_store_puts_total) || puts=""
    reqs=$(metric_sum "$s" kvc_rpc_requests_total) || reqs=""
    if [ "${puts:-0}" -ge 1 ] && [ "${reqs:-0}" -ge 2 ]; then
      pass "metrics: $s counted its put and requests (puts $puts, rpc requests $reqs)"
    else
      fail "metrics: $s counted its put and requests" "puts '$puts', rpc requests '$reqs'"
    fi
  done
}

# --- prefix reuse across clients -------------------------------------------------------------

check_prefix_reuse() {
  log "prefix reuse across clients"
  local out matched second
  generate shared 21 512 || { fail "generate the shared-prefix dump"; return; }
  # Client A (the test-client container) stores a 512-token document.
  if ! kvc put --workers "$WORKERS" --in "$DUMPS/shared.safetensors" --model "$MODEL" \
      --tokens "$(ids 1 512)" --json >"$TMP/prefix-put.out" 2>&1; then
    fail "prefix reuse: client A stores a 512-token prefix" "$(tail -n3 "$TMP/prefix-put.out")"
    return
  fi
  pass "prefix reuse: client A stores a 512-token prefix" \
    "(on $(json_field "$(cat "$TMP/prefix-put.out")" worker))"
  # Client B, a second container of the test-client service, asks about that document followed
  # by 256 more tokens: the longest stored prefix is A's 512 tokens (2 of 3 blocks).
  second=$(compose run -d --no-deps test-client sleep 600)
  BG_CONTAINERS+=("$second")
  if out=$(kvc_in "$second" lookup --timeout-ms "$PATIENT_MS" --workers "$WORKERS" \
      --model "$MODEL" \
      --tokens "$(ids 1 512),$(ids 90001 90256)" --layout "$LAYOUT" --json 2>&1) &&
     matched=$(json_field "$out" matched_tokens) && [ "$matched" = 512 ]; then
    pass "prefix reuse: client B finds the 512-token prefix of its 768-token request"
  else
    fail "prefix reuse: client B finds the 512-token prefix of its 768-token request" "$out"
  fi
  if out=$(kvc_in "$second" fetch --timeout-ms "$PATIENT_MS" --workers "$WORKERS" \
      --model "$MODEL" \
      --tokens "$(ids 1 512),$(ids 90001 90256)" --layout "$LAYOUT" \
      --out /tmp/reuse.safetensors --json 2>&1) &&
     [ "$(json_field "$out" matched_tokens)" = 512 ]; then
    pass "prefix reuse: client B fetches A's compacted prefix"
  else
    fail "prefix reuse: client B fetches A's compacted prefix" "$out"
  fi
  # A request that diverges inside the first block shares nothing.
  if out=$(kvc_in "$second" lookup --timeout-ms "$PATIENT_MS" --workers "$WORKERS" \
      --model "$MODEL" \
      --tokens "7,$(ids 2 512)" --layout "$LAYOUT" --json 2>&1) &&
     [ "$(json_field "$out" matched_tokens)" = 0 ]; then
    pass "prefix reuse: a request differing in its first token misses"
  else
    fail "prefix reuse: a request differing in its first token misses" "$out"
  fi
  # Another tenant's model id never sees the entry.
  if out=$(kvc_in "$second" lookup --timeout-ms "$PATIENT_MS" --workers "$WORKERS" \
      --model other-model \
      --tokens "$(ids 1 512)" --layout "$LAYOUT" --json 2>&1) &&
     [ "$(json_field "$out" matched_tokens)" = 0 ]; then
    pass "prefix reuse: another model id does not see the entry"
  else
    fail "prefix reuse: another model id does not see the entry" "$out"
  fi
  docker rm -f "$second" >/dev/null 2>&1 || true
}

# --- docker kill under load -------------------------------------------------------------------

# The load: puts of dumps load-1..load-N, one after the other, each line "ok I JSON" or
# "err I MESSAGE" in $DUMPS/load.log inside the client.
LOAD_N=32
start_load() {
  docker exec -d "$CLIENT" bash -c '
    set -u
    : >"$0/load.log"
    for i in $(seq 1 "$1"); do
      if out=$(kvcompact put --workers "$KVC_WORKERS" --in "$0/load-$i.safetensors" \
          --model "$2" --json --timeout-ms 30000 2>"$0/load-$i.err"); then
        echo "ok $i $out" >>"$0/load.log"
      else
        echo "err $i $(tail -n1 "$0/load-$i.err")" >>"$0/load.log"
      fi
    done
    echo done >>"$0/load.log"' "$DUMPS" "$LOAD_N" "$MODEL"
}
load_log() { docker exec "$CLIENT" cat "$DUMPS/load.log" 2>/dev/null || true; }

check_kill_under_load() {
  log "docker kill of worker2 under load"
  local i w2 acked_before deadline logtxt
  generate_many load "$LOAD_N" 1000 || { fail "generate the load dumps"; return; }
  w2=$(cid worker2)
  start_load
  # Kill once a few puts are acknowledged, some of them by worker2, so the restart has
  # something of its own to bring back.
  deadline=$(( $(date +%s) + 120 ))
  while :; do
    logtxt=$(load_log)
    if [ "$(grep -c '^ok ' <<<"$logtxt")" -ge 6 ] &&
       grep -q '"worker":"worker2:7400"' <<<"$logtxt"; then
      break
    fi
    if grep -q '^done' <<<"$logtxt" || [ "$(date +%s)" -ge "$deadline" ]; then break; fi
    sleep 0.2
  done
  docker kill "$w2" >/dev/null
  # A put acknowledged just before the kill is logged within moments: wait, then take the log
  # as "before" (later lines cannot come from the dead worker2).
  sleep 1
  logtxt=$(load_log)
  acked_before=$(grep '^ok ' <<<"$logtxt" | cut -d' ' -f2 | paste -sd' ')
  log "killed worker2 after puts [$acked_before]"

  # While worker2 is down, a dump worker2 stored before (so worker2 is first in its route) is
  # put again: the client must fail over to another worker after a failed attempt.
  local first_w2 out rc=0 attempts
  first_w2=$(grep '^ok ' <<<"$logtxt" | grep '"worker":"worker2:7400"' | head -n1 | cut -d' ' -f2)
  if [ -n "$first_w2" ]; then
    out=$(kvc put --workers "$WORKERS" --in "$DUMPS/load-$first_w2.safetensors" \
      --model "$MODEL" --timeout-ms 30000 --json 2>&1) || rc=$?
    attempts=$(json_field "$out" attempts)
    if [ "$rc" -eq 0 ] && [ "${attempts:-0}" -ge 2 ] &&
       [ "$(json_field "$out" worker)" != worker2:7400 ]; then
      pass "kill: a put routed to the dead worker2 fails over" \
        "($attempts attempts, stored on $(json_field "$out" worker))"
    else
      fail "kill: a put routed to the dead worker2 fails over" "exit $rc: $(last_msg "$out" 2)"
    fi
  else
    fail "kill: a put routed to the dead worker2 fails over" \
      "worker2 acknowledged no put before the kill"
  fi

  deadline=$(( $(date +%s) + 300 ))
  until grep -q '^done' <<<"$(load_log)"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then break; fi
    sleep 1
  done
  logtxt=$(load_log)
  echo "$logtxt" >"$TMP/load.log"
  LOAD_LOG=$logtxt
  local n_ok n_err after_kill
  n_ok=$(grep -c '^ok ' <<<"$logtxt" || true)
  n_err=$(grep -c '^err ' <<<"$logtxt" || true)
  if grep -q '^done' <<<"$logtxt" && [ "$n_ok" -eq "$LOAD_N" ] && [ "$n_err" -eq 0 ]; then
    pass "kill: all $LOAD_N puts of the load acknowledged though worker2 was killed mid-load"
  else
    fail "kill: all $LOAD_N puts of the load acknowledged though worker2 was killed mid-load" \
      "$n_ok ok, $n_err failed: $(grep '^err ' <<<"$logtxt" | head -n3 | paste -sd'|')"
  fi
  after_kill=$(grep '^ok ' <<<"$logtxt" | awk -v before=" $acked_before " \
    'index(before, " " $2 " ") == 0')
  if [ -n "$after_kill" ] && ! grep -q '"worker":"worker2:7400"' <<<"$after_kill"; then
    pass "kill: the $(wc -l <<<"$after_kill") puts after the kill went to the live workers"
  else
    fail "kill: the puts after the kill went to the live workers" \
      "$(grep -c . <<<"$after_kill") puts after the kill: $(grep -o '"worker":"[^"]*"' \
        <<<"$after_kill" | sort | uniq -c | paste -sd' ')"
  fi

  docker start "$w2" >/dev/null
  if wait_healthy 120 worker2; then
    pass "kill: worker2 healthy again after docker start"
  else
    fail "kill: worker2 healthy again after docker start"
  fi

  # Every acknowledged entry is found whole, and fetched; the ones worker2 acknowledged before
  # it was killed are on worker2 itself.
  local missing=() line idx worker out own=0 own_missing=()
  while read -r line; do
    idx=$(cut -d' ' -f2 <<<"$line")
    worker=$(json_field "$(cut -d' ' -f3- <<<"$line")" worker)
    if ! out=$(kvc fetch --timeout-ms "$PATIENT_MS" --workers "$WORKERS" \
        --in "$DUMPS/load-$idx.safetensors" \
        --model "$MODEL" --out "/tmp/load-$idx.out.safetensors" --json 2>&1) ||
       [ "$(json_field "$out" matched_tokens)" != 256 ]; then
      # Say whether the worker that acknowledged it still has it.
      missing+=("$idx@$worker [fetch: $(last_msg "$out")] [lookup on $worker: $(kvc lookup \
        --timeout-ms "$PATIENT_MS" \
        --workers "$worker" --in "$DUMPS/load-$idx.safetensors" --model "$MODEL" 2>&1 |
        grep -v '^note: ' | tail -n1)]")
    fi
    if [ "$worker" = worker2:7400 ]; then
      own=$((own + 1))
      if ! out=$(kvc lookup --timeout-ms "$PATIENT_MS" --workers worker2:7400 \
          --in "$DUMPS/load-$idx.safetensors" \
          --model "$MODEL" --json 2>&1) ||
         [ "$(json_field "$out" matched_tokens)" != 256 ]; then
        own_missing+=("$idx")
      fi
    fi
  done < <(grep '^ok ' <<<"$logtxt")
  if [ "$n_ok" -gt 0 ] && [ ${#missing[@]} -eq 0 ]; then
    pass "kill: every one of the $n_ok acknowledged entries is fetched after the restart"
  else
    fail "kill: every acknowledged entry is fetched after the restart" "missing: ${missing[*]:-all}"
  fi
  if [ "$own" -ge 1 ] && [ ${#own_missing[@]} -eq 0 ]; then
    pass "kill: the $own entries worker2 acknowledged before docker kill survived on worker2"
  else
    fail "kill: the entries worker2 acknowledged before docker kill survived on worker2" \
      "$own acknowledged by worker2, missing: ${own_missing[*]:-none}"
  fi
}

# --- a hung worker ---------------------------------------------------------------------------

# `docker pause` freezes worker1: its kernel still accepts connections, but nothing answers, so
# only the client's time budgets get it unstuck (no refused connection, no failed name lookup).
check_pause() {
  log "docker pause of worker1 (a worker that hangs)"
  local w1 idx out rc t0 elapsed attempts worker
  w1=$(cid worker1)
  # A load dump worker1 stored at the first attempt has worker1 first in its route.
  local line
  idx=""
  while read -r line; do
    if [ "$(json_field "${line#ok * }" worker)" = worker1:7400 ] &&
       [ "$(json_field "${line#ok * }" attempts)" = 1 ]; then
      idx=$(cut -d' ' -f2 <<<"$line")
      break
    fi
  done < <(grep '^ok ' <<<"${LOAD_LOG:-}")
  if [ -z "$idx" ]; then
    fail "pause: a dump routed to worker1 first" "worker1 stored no load put at its first attempt"
    return
  fi
  docker pause "$w1" >/dev/null
  t0=$(now_ms)
  rc=0
  out=$(kvc put --workers "$WORKERS" --in "$DUMPS/load-$idx.safetensors" --model "$MODEL" \
    --timeout-ms 10000 --json 2>&1) || rc=$?
  elapsed=$(( $(now_ms) - t0 ))
  attempts=$(json_field "$out" attempts)
  worker=$(json_field "$out" worker)
  if [ "$rc" -eq 0 ] && [ "${attempts:-0}" -ge 2 ] && [ "$worker" != worker1:7400 ] &&
     [ "$elapsed" -le 13000 ]; then
    pass "pause: a put routed to the hung worker1 fails over" \
      "(to $worker in ${elapsed} ms, budget 10 s)"
  else
    fail "pause: a put routed to the hung worker1 fails over within its budget" \
      "exit $rc after ${elapsed} ms, attempts '$attempts', worker '$worker': $(last_msg "$out" 2)"
  fi
  t0=$(now_ms)
  rc=0
  out=$(kvc lookup --workers worker1:7400 --in "$DUMPS/load-$idx.safetensors" --model "$MODEL" \
    --timeout-ms 2000 2>&1) || rc=$?
  elapsed=$(( $(now_ms) - t0 ))
  if [ "$rc" -eq 1 ] && grep -q recompute <<<"$out" && [ "$elapsed" -le 5000 ]; then
    pass "pause: a lookup on the hung worker1 alone says recompute in ${elapsed} ms (budget 2 s)"
  else
    fail "pause: a lookup on the hung worker1 alone says recompute within its budget" \
      "exit $rc after ${elapsed} ms: $(last_msg "$out" 2)"
  fi
  docker unpause "$w1" >/dev/null
  if out=$(kvc lookup --workers worker1:7400 --in "$DUMPS/load-$idx.safetensors" \
       --model "$MODEL" --timeout-ms 10000 --json 2>&1) &&
     [ "$(json_field "$out" matched_tokens)" = 256 ]; then
    pass "pause: after docker unpause, worker1 serves its entry again"
  else
    fail "pause: after docker unpause, worker1 serves its entry again" "$(last_msg "$out" 2)"
  fi
}

# --- network partition ------------------------------------------------------------------------

check_partition() {
  log "docker network disconnect of worker3"
  local w3 i out t0 elapsed rc slow=() errs=() landed acked=()
  w3=$(cid worker3)
  generate_many part 9 2000 || { fail "generate the partition dumps"; return; }
  docker network disconnect "$NETWORK" "$w3"
  # Puts keep succeeding on the other workers, each within its budget. The budget (30 s) leaves
  # room for the cut-off worker's attempt, so this checks failover; the 3 s lookups below check
  # that a short budget holds.
  landed=""
  for i in $(seq 1 9); do
    t0=$(now_ms)
    rc=0
    out=$(kvc put --workers "$WORKERS" --in "$DUMPS/part-$i.safetensors" --model "$MODEL" \
      --timeout-ms 30000 --json 2>&1) || rc=$?
    elapsed=$(( $(now_ms) - t0 ))
    if [ "$rc" -ne 0 ]; then errs+=("$i: $(last_msg "$out")"); continue; fi
    [ "$elapsed" -le 33000 ] || slow+=("$i:${elapsed}ms")
    acked+=("$i")
    landed+=" $(json_field "$out" worker)@${elapsed}ms"
  done
  if [ ${#errs[@]} -eq 0 ] && [ ${#slow[@]} -eq 0 ] && [[ $landed != *worker3* ]]; then
    pass "partition: 9 puts succeed on the connected workers within their 30 s budget" \
      "(${landed# })"
  else
    fail "partition: puts succeed on the connected workers within their budget" \
      "errors: ${errs[*]:-none}; over budget: ${slow[*]:-none}; landed:$landed"
  fi
  # The round-trip entry is on every worker (it was put through each alone). Asking the cut-off
  # worker3 alone fails with "recompute" within a 3 s budget, never hangs.
  t0=$(now_ms)
  rc=0
  out=$(kvc lookup --workers worker3:7400 --in "$DUMPS/rt.safetensors" --model "$MODEL" \
    --tokens "$(ids 1 2048)" --timeout-ms 3000 2>&1) || rc=$?
  elapsed=$(( $(now_ms) - t0 ))
  if [ "$rc" -eq 1 ] && grep -q recompute <<<"$out" && [ "$elapsed" -le 6000 ]; then
    pass "partition: a lookup on the cut-off worker alone says recompute" \
      "(in ${elapsed} ms, budget 3 s)"
  else
    fail "partition: a lookup on the cut-off worker alone says recompute within its budget" \
      "exit $rc after ${elapsed} ms: $(last_msg "$out" 2)"
  fi
  # Through the full list the connected workers serve it, within the same budget.
  t0=$(now_ms)
  rc=0
  out=$(kvc lookup --workers "$WORKERS" --in "$DUMPS/rt.safetensors" --model "$MODEL" \
    --tokens "$(ids 1 2048)" --timeout-ms 3000 --json 2>&1) || rc=$?
  elapsed=$(( $(now_ms) - t0 ))
  if [ "$rc" -eq 0 ] && [ "$elapsed" -le 6000 ] &&
     [ "$(json_field "$out" matched_tokens)" = 2048 ]; then
    pass "partition: a lookup over all workers finds the entry in ${elapsed} ms (budget 3 s)"
  else
    fail "partition: a lookup over all workers finds the entry within its budget" \
      "exit $rc after ${elapsed} ms: $(last_msg "$out" 2)"
  fi

  # Reconnect under its service name; worker3 serves its own entry again.
  docker network connect --alias worker3 "$NETWORK" "$w3"
  if wait_healthy 60 worker3 &&
     out=$(kvc lookup --workers worker3:7400 --in "$DUMPS/rt.safetensors" --model "$MODEL" \
       --tokens "$(ids 1 2048)" --timeout-ms 10000 --json 2>&1) &&
     [ "$(json_field "$out" matched_tokens)" = 2048 ]; then
    pass "partition: after reconnecting, worker3 serves its entry again"
  else
    fail "partition: after reconnecting, worker3 serves its entry again" "$(last_msg "$out" 2)"
  fi
  # And the puts acknowledged during the partition are all found through the full list.
  local lost=()
  for i in "${acked[@]}"; do
    out=$(kvc lookup --timeout-ms "$PATIENT_MS" --workers "$WORKERS" \
      --in "$DUMPS/part-$i.safetensors" --model "$MODEL" \
      --json 2>&1) && [ "$(json_field "$out" matched_tokens)" = 256 ] ||
      lost+=("$i: $(last_msg "$out")")
  done
  if [ ${#acked[@]} -gt 0 ] && [ ${#lost[@]} -eq 0 ]; then
    pass "partition: the ${#acked[@]} entries acknowledged during the partition are found after it"
  else
    fail "partition: the entries acknowledged during the partition are found after it" \
      "${#acked[@]} acknowledged; lost: ${lost[*]:-none}"
  fi
}
