#!/usr/bin/env bash
# The reproducible benchmark: brings the local stack up, rewrites Redis's append-only files
# (so no background rewrite lands in a run), starts a release gateway and persister, measures the Redis ceiling (redis-benchmark running EVALSHA of lua/purchase.lua
# on the same Redis) before and after, runs the standard scenarios with flashgate-loadtest
# (every run checks the invariants), and prints a summary against the targets. Reports go to
# target/bench/<time>/ (summary.md, one JSON per run, the servers' logs).
#
# It takes /tmp/flashgate-bench.lock for the timed part so benchmarks on one machine never
# overlap (set FLASHGATE_BENCH_LOCK_HELD=1 when the caller holds it already).
# Knobs (environment): FLASHGATE_BENCH_SECONDS (15), FLASHGATE_BENCH_WARMUP (3),
# FLASHGATE_BENCH_CONNECTIONS (64), FLASHGATE_BENCH_SHARE (offered open-loop rate as a share
# of the Redis ceiling, 0.5), FLASHGATE_BENCH_ADDR (127.0.0.1:8098),
# FLASHGATE_BENCH_PERSISTER_ADDR (127.0.0.1:8099), FLASHGATE_BENCH_BIN (a folder of prebuilt
# flashgate-gateway, -persister and -loadtest binaries to measure instead of building this
# tree, e.g. an older commit's for a before/after comparison; FLASHGATE_COMMIT names them),
# FLASHGATE_BENCH_MYSQL_URL (another database for them, when their schema is older; their Redis
# keys then get a prefix of their own, FLASHGATE_BENCH_KEY_PREFIX or a fresh one),
# FLASHGATE_BENCH_LIFECYCLE (1: also run the lifecycle scenario — orders paid, cancelled or
# abandoned in FLASHGATE_BENCH_LIFECYCLE_SHARES, default 40:30:30, with a 30 s payment window,
# so its drain waits ~35 s for the expiries — then flashgate-batch reconcile-stock on its sale;
# 0, the default, leaves the standard runs alone; binaries without the scenario skip it).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${FLASHGATE_BENCH_LOCK_HELD:-}" ]; then
  exec env FLASHGATE_BENCH_LOCK_HELD=1 flock /tmp/flashgate-bench.lock "$0" "$@"
fi

# shellcheck source=scripts/build-deps.sh
. scripts/build-deps.sh
# shellcheck source=scripts/servers.sh
. scripts/servers.sh
ensure_build_deps

step() { printf '\n== %s\n' "$*" >&2; }
seconds=${FLASHGATE_BENCH_SECONDS:-15}
warmup=${FLASHGATE_BENCH_WARMUP:-3}
connections=${FLASHGATE_BENCH_CONNECTIONS:-64}
share=${FLASHGATE_BENCH_SHARE:-0.5}
addr=${FLASHGATE_BENCH_ADDR:-127.0.0.1:8098}
out=target/bench/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"

step "local stack"
scripts/stack.sh status >/dev/null 2>&1 || scripts/stack.sh up
eval "$(scripts/stack.sh env)"
# Another database of the same server, e.g. for older binaries whose migrations are behind.
if [ -n "${FLASHGATE_BENCH_MYSQL_URL:-}" ]; then
  export FLASHGATE__MYSQL__URL=$FLASHGATE_BENCH_MYSQL_URL
  # Its sale ids start again at 1: their Redis keys need a prefix of their own.
  export FLASHGATE__REDIS__KEY_PREFIX=${FLASHGATE_BENCH_KEY_PREFIX:-fgb$(date +%s)}
fi
read -r redis_host redis_port < <(redis-cli -p "${FLASHGATE__REDIS__SENTINELS##*:}" \
  SENTINEL get-master-addr-by-name "${FLASHGATE__REDIS__MASTER_NAME:-flashgate}" | paste -sd' ')

if [ -n "${FLASHGATE_BENCH_BIN:-}" ]; then
  # Binaries built elsewhere (an older commit, for a before/after comparison in one session).
  step "prebuilt binaries in $FLASHGATE_BENCH_BIN"
  bin=$FLASHGATE_BENCH_BIN
  export FLASHGATE_COMMIT=${FLASHGATE_COMMIT:-prebuilt}
else
  step "release build"
  cargo build --release --quiet -p flashgate-gateway -p flashgate-persister -p flashgate-loadtest \
    -p flashgate-batch
  bin=target/release
  export FLASHGATE_COMMIT=${FLASHGATE_COMMIT:-$(git describe --always --dirty --abbrev=12)}
fi
"$bin/flashgate-persister" migrate >/dev/null 2>&1

# Redis alone: EVALSHA of the gateway's own script with the gateway's keys and arguments, a
# new buyer and order id every call, stock that never runs out. Prints requests/s.
ceiling() {
  local sha p="fgbench$$:{s:0}" csv
  local cli=(redis-cli -h "$redis_host" -p "$redis_port")
  sha=$("${cli[@]}" SCRIPT LOAD "$(cat lua/purchase.lua)")
  "${cli[@]}" HSET "$p:sale" status active starts_ms 0 ends_ms 4102444800000 \
    per_user_limit 1000000000 price 100 total 1000000000 admitted 0 >/dev/null
  "${cli[@]}" SET "$p:stock" 1000000000 >/dev/null
  # KEYS as lua/purchase.lua's header lists them (sale stock buyers outbox orders holds).
  csv=$(redis-benchmark -h "$redis_host" -p "$redis_port" -c 50 -n 200000 -r 100000000 --csv \
    EVALSHA "$sha" 6 "$p:sale" "$p:stock" "$p:buyers" "$p:outbox" "$p:orders" "$p:holds" \
    "bench-__rand_int__" 1 "bench-__rand_int__" trace 1000000000 86400 fp)
  "${cli[@]}" DEL "$p:sale" "$p:stock" "$p:buyers" "$p:outbox" "$p:orders" "$p:holds" >/dev/null
  printf '%s\n' "$csv" | tail -n 1 | cut -d, -f2 | tr -d '"'
}

# Earlier runs leave their orders in Redis, so the append-only files grow by about 1 KB per
# purchase and Redis rewrites one in the background (a fork writing the whole data set, several
# seconds of a core) whenever it has doubled: on two shared cores that lands in the middle of
# a run now and then. Rewrite them now (primary and replicas), so none is due while measuring.
compact_aof() {
  local nodes=("$redis_host $redis_port") node busy
  mapfile -t -O 1 nodes < <(redis-cli -h "$redis_host" -p "$redis_port" INFO replication |
    sed -nE 's/^slave[0-9]+:ip=([^,]+),port=([0-9]+),.*/\1 \2/p')
  for node in "${nodes[@]}"; do
    redis-cli -h "${node% *}" -p "${node#* }" BGREWRITEAOF >/dev/null 2>&1 || true
  done
  for _ in $(seq 1 300); do
    busy=0
    for node in "${nodes[@]}"; do
      redis-cli -h "${node% *}" -p "${node#* }" INFO persistence |
        grep -qE '^aof_rewrite_(in_progress|scheduled):1' && busy=1
    done
    [ "$busy" = 0 ] && return 0
    sleep 1
  done
}

step "compacting Redis's append-only files"
compact_aof

step "Redis ceiling, before"
before=$(ceiling)
echo "EVALSHA purchase.lua: $before requests/s" >&2

step "release gateway on $addr and persister"
FLASHGATE__LOG__FILTER=warn start_servers "$bin" "$addr" \
  "${FLASHGATE_BENCH_PERSISTER_ADDR:-127.0.0.1:8099}" "$out/gateway.log" "$out/persister.log"

# CPU time (user + system, clock ticks) each process of the box has used so far: ratios of
# these per request travel between machines better than rates do.
stack_dir=${FLASHGATE_STACK_DIR:-.stack}
pid_of() { cat "$stack_dir/run/$1.pid" 2>/dev/null || echo 0; }
replica_port=$([ "$redis_port" = 6390 ] && echo 6391 || echo 6390)
cpu_names=(gateway persister redis-primary redis-replica tansu mariadb)
cpu_ticks() {
  local pid
  for pid in "$gateway" "$persister" "$(pid_of "redis-$redis_port")" \
    "$(pid_of "redis-$replica_port")" "$(pid_of tansu)" "$(pid_of mariadb)"; do
    awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0
  done
}
ticks_per_second=$(getconf CLK_TCK)
printf '| run | requests | %s | load generator |\n|---|---|%s---|\n' \
  "$(IFS='|'; echo "${cpu_names[*]}" | sed 's/|/ | /g')" "$(printf -- '---|%.0s' "${cpu_names[@]}")" \
  >"$out/cpu.md"

run() { # name, then flashgate-loadtest run options
  local name=$1
  shift
  step "$name"
  local status=0 before_ticks after_ticks generator requests
  mapfile -t before_ticks < <(cpu_ticks)
  local TIMEFORMAT='%U %S'
  { time FLASHGATE__LOG__FILTER=warn "$bin/flashgate-loadtest" run --target "http://$addr" --quiet \
    --duration "${seconds}s" --warmup "${warmup}s" --connections "$connections" \
    --json "$out/$name.json" "$@" >"$out/$name.md" 2>"$out/$name.err" || status=$?; } 2>"$out/$name.time"
  mapfile -t after_ticks < <(cpu_ticks)
  cat "$out/$name.err" "$out/$name.md" >&2
  reports+=("$out/$name.json")
  [ "$status" -le 1 ] || { echo "run $name failed (exit $status)" >&2; exit 2; }
  # Every request answered in the run, warm-up included, as the CPU counts cover it all.
  requests=$(python3 -c 'import json,sys; print(sum(json.load(open(sys.argv[1]))["status_counts"].values()))' \
    "$out/$name.json" 2>/dev/null || echo 0)
  generator=$(awk '{ print ($1 + $2) }' "$out/$name.time")
  {
    printf '| %s | %s |' "$name" "$requests"
    for i in "${!cpu_names[@]}"; do
      awk -v a="${after_ticks[$i]}" -v b="${before_ticks[$i]}" -v hz="$ticks_per_second" -v n="$requests" \
        'BEGIN { printf " %.1f |", (n > 0 ? (a - b) / hz * 1e6 / n : 0) }'
    done
    awk -v g="$generator" -v n="$requests" 'BEGIN { printf " %.1f |\n", (n > 0 ? g * 1e6 / n : 0) }'
  } >>"$out/cpu.md"
}
reports=()
max_shoppers=$(( 40000 * seconds ))
rate=$(awk -v c="$before" -v s="$share" 'BEGIN { printf "%d", c * s + 0.999 }')
run purchase-rush-closed --scenario purchase-rush --mode closed \
  --shoppers "$max_shoppers" --stock "$max_shoppers"
run purchase-rush-open --scenario purchase-rush --mode open --rate "$rate" \
  --shoppers $(( rate * seconds )) --stock $(( rate * seconds ))
run sold-out-closed --scenario sold-out --mode closed --shoppers 100000 --stock 1000
# Coupon scenarios run once the gateway has the coupon API (401 without a token; 404 before).
if [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$addr/v1/admin/coupon-policies")" != 404 ]; then
  run coupon-rush-open --scenario coupon-rush --mode open --rate "$rate" \
    --shoppers $(( rate * seconds )) --stock 1000 --coupons $(( rate * seconds / 2 ))
  run mixed-open --scenario mixed --mode open --rate "$rate" --shoppers 50000 \
    --stock 20000 --coupons 20000
fi

# The order lifecycle: purchases, each order then paid, cancelled or abandoned (its unit
# back on sale when cancelled or expired). Not in the targets; its invariants (checked after
# every abandoned order expired) and the operators' stock reconciliation are.
reconcile=skipped
if [ "${FLASHGATE_BENCH_LIFECYCLE:-0}" = 1 ] &&
  "$bin/flashgate-loadtest" run --help 2>/dev/null | grep -q lifecycle; then
  run lifecycle-open --scenario lifecycle --mode open --rate "$rate" \
    --shoppers $(( rate * seconds )) --stock $(( rate * seconds / 2 )) \
    --lifecycle-shares "${FLASHGATE_BENCH_LIFECYCLE_SHARES:-40:30:30}"
  lifecycle_sale=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sale_id"])' \
    "$out/lifecycle-open.json")
  if [ -x "$bin/flashgate-batch" ]; then
    step "flashgate-batch reconcile-stock --sale $lifecycle_sale"
    reconcile=0
    "$bin/flashgate-batch" reconcile-stock --sale "$lifecycle_sale" >"$out/reconcile-stock.txt" \
      2>&1 || reconcile=$?
    cat "$out/reconcile-stock.txt" >&2
  fi
fi

kill -TERM "$gateway" "$persister"
wait "$gateway" "$persister" || true
trap - EXIT

step "Redis ceiling, after"
after=$(ceiling)
echo "EVALSHA purchase.lua: $after requests/s" >&2

step "summary ($out/summary.md)"
{
  printf '# flashgate benchmark %s\n\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf -- '- machine: %s cores (%s), %s\n' "$(nproc)" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" \
    "$(. /etc/os-release && echo "$PRETTY_NAME")"
  printf -- '- commit: %s\n' "$FLASHGATE_COMMIT"
  printf -- '- settings: %ss per run after a %ss warm-up, %s connections; open loop offered %s req/s (%s of the ceiling before)\n\n' \
    "$seconds" "$warmup" "$connections" "$rate" "$share"
} >"$out/summary.md"
met=0
"$bin/flashgate-loadtest" summary --ceiling "$before" --ceiling "$after" "${reports[@]}" \
  >>"$out/summary.md" || met=$?
{
  printf '\nCPU time per request, µs (user + system, from /proc; warm-up, run and drain):\n\n'
  cat "$out/cpu.md"
  if [ "$reconcile" != skipped ]; then
    printf '\n`flashgate-batch reconcile-stock --sale %s` after the lifecycle run: exit %s (0 clean, 2 drift or not drained)\n' \
      "$lifecycle_sale" "$reconcile"
  fi
} >>"$out/summary.md"
cat "$out/summary.md"
[ "$reconcile" = skipped ] || [ "$reconcile" = 0 ] || [ "$met" != 0 ] || met=1
exit "$met"
