#!/usr/bin/env bash
# Notification benchmark (issue 17, "Measure"): deliveries per second to a webhook receiver on
# loopback, and the time from an order's `order.paid` to its webhook, under the lifecycle load
# scenario. Debug binaries (the machine has 2 shared cores; no release build).
#
# It starts a gateway and a persister with a database, a Redis key prefix, Kafka topics and
# consumer groups of its own (as scripts/fuzz.sh does), scripts/webhook_receiver.py (verifies
# each signature and writes one JSON line per request with its arrival time), and a notifier
# routing `order.paid` to that webhook only; then runs `flashgate-loadtest run --scenario
# lifecycle` (open loop, orders paid by a manager's mark-paid), waits until every paid order's
# webhook has arrived, and prints:
# - deliveries per second while the orders were being paid (deliveries that arrived up to the
#   last `order.paid`'s occurred_at, over the span of their arrival times), and the drain rate
#   of the backlog left after it (deliveries after that instant over the time to the last one);
# - per paid order, arrival at the receiver minus the envelope's `occurred_at` (Redis's clock,
#   same host): p50, p99, max;
# - the notifier's CPU seconds (user + system, /proc/<pid>/stat) per delivery, from ready to
#   the last delivery (it also consumes the cancelled/expired events, which it routes nowhere).
# Everything it started is stopped and everything it created (database, topics, Redis keys)
# removed at the end; the report stays in target/notify-bench/<time>/.
#
# Knobs (environment): FLASHGATE_NOTIFY_BENCH_RATE (purchases/s offered, 200),
# FLASHGATE_NOTIFY_BENCH_SECONDS (20), FLASHGATE_NOTIFY_BENCH_SHARES (pay:cancel:abandon,
# 50:25:25), FLASHGATE_NOTIFY_BENCH_PORT_BASE (8110: gateway; +1 persister, +2 notifier,
# +3 webhook receiver), FLASHGATE_NOTIFY_BENCH_DRAIN (s to wait for the last webhooks, 180).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/servers.sh
. scripts/servers.sh

rate=${FLASHGATE_NOTIFY_BENCH_RATE:-200}
seconds=${FLASHGATE_NOTIFY_BENCH_SECONDS:-20}
shares=${FLASHGATE_NOTIFY_BENCH_SHARES:-50:25:25}
base=${FLASHGATE_NOTIFY_BENCH_PORT_BASE:-8110}
drain=${FLASHGATE_NOTIFY_BENCH_DRAIN:-180}
addr=127.0.0.1:$base
persister_addr=127.0.0.1:$((base + 1))
notifier_addr=127.0.0.1:$((base + 2))
webhook_port=$((base + 3))
for port in "$base" $((base + 1)) $((base + 2)) "$webhook_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is taken (another run?); set FLASHGATE_NOTIFY_BENCH_PORT_BASE" >&2
    exit 1
  fi
done
step() { printf '\n== %s\n' "$*" >&2; }

step "debug build"
cargo build --bins -p flashgate-gateway -p flashgate-persister -p flashgate-notifier \
  -p flashgate-loadtest --quiet
bin=target/debug

scripts/stack.sh status >/dev/null 2>&1 || { echo "the local stack is not up" >&2; exit 1; }
eval "$(scripts/stack.sh env)"
out=target/notify-bench/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"

# Everything this run writes is its own.
run=notifybench_$(date +%s)_$$
mysql_base=${FLASHGATE__MYSQL__URL%/*}
export FLASHGATE__MYSQL__URL=$mysql_base/$run
export FLASHGATE__REDIS__KEY_PREFIX=$run
export FLASHGATE__KAFKA__CONSUMER_GROUP=$run-persister
export FLASHGATE__LOG__FILTER=warn
topics=()
for spec in orders:4 coupons:4 points:4 compensations:2 order_events:4 payments:4 dead_letter:1; do
  name=${spec%:*}
  export "FLASHGATE__KAFKA__${name^^}_TOPIC=$run.$name"
  topics+=("$run.$name:${spec#*:}")
done
tansu=$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")
broker=tcp://${FLASHGATE__KAFKA__BROKERS%%,*}
mysql_cmd() { # mysql://user:password@host:port/db
  local rest=${mysql_base#mysql://}
  local cred=${rest%%@*} hostport=${rest#*@}
  mariadb --protocol=tcp -u"${cred%%:*}" -p"${cred#*:}" -h"${hostport%%:*}" -P"${hostport##*:}" "$@"
}
redis_primary() {
  local sentinel=${FLASHGATE__REDIS__SENTINELS%%,*}
  redis-cli -h "${sentinel%:*}" -p "${sentinel##*:}" sentinel get-master-addr-by-name \
    "$FLASHGATE__REDIS__MASTER_NAME" | paste -sd' '
}
gateway='' persister='' notifier='' receiver=''
cleanup() {
  local pid
  for pid in $notifier $receiver $gateway $persister; do kill "$pid" 2>/dev/null || true; done
  for pid in $notifier $receiver $gateway $persister; do wait "$pid" 2>/dev/null || true; done
  mysql_cmd -e "DROP DATABASE IF EXISTS \`$run\`" || true
  local topic
  for topic in "${topics[@]}"; do
    "$tansu" topic delete "${topic%:*}" --broker "$broker" >/dev/null 2>&1 || true
  done
  local host port
  read -r host port < <(redis_primary) || return 0
  redis-cli -h "$host" -p "$port" --scan --pattern "$run*" |
    xargs -r redis-cli -h "$host" -p "$port" unlink >/dev/null || true
}
trap cleanup EXIT

step "database $run, its topics"
mysql_cmd -e "CREATE DATABASE \`$run\`"
for topic in "${topics[@]}"; do
  "$tansu" topic create "${topic%:*}" --broker "$broker" --partitions "${topic#*:}" >/dev/null
done
"$bin/flashgate-persister" migrate >"$out/migrate.log" 2>&1

step "gateway on $addr, persister on $persister_addr"
# One manager marks every paid order paid: its admin limit (50/s by default) would refuse
# most of them with 429 at this rate.
ready=0
FLASHGATE__RATE_LIMITS='[{class = "admin", key = "user", rate = 0}]' \
  start_servers "$bin" "$addr" "$persister_addr" "$out/gateway.log" "$out/persister.log" || ready=$?
trap cleanup EXIT # start_servers set its own
[ "$ready" = 0 ] || { echo "the gateway was not ready; see $out/gateway.log" >&2; exit 1; }

step "webhook receiver on 127.0.0.1:$webhook_port, notifier on $notifier_addr"
secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
hooks=$out/webhooks.jsonl
: >"$hooks"
/usr/bin/python3 scripts/webhook_receiver.py --port "$webhook_port" --secret "$secret" \
  --out "$hooks" &
receiver=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$webhook_port") 2>/dev/null && break
  sleep 0.1
done
cat >"$out/notifier.toml" <<TOML
[notifier]
consumer_group = "$run-notifier"
templates_dir = "notifier/templates"
[notifier.routes]
"order.paid" = ["webhook:bench"]
[notifier.webhooks.bench]
url = "http://127.0.0.1:$webhook_port/flashgate-events"
secret = "$secret"
timeout_ms = 5000
[notifier.email]
host = "127.0.0.1"
port = 25
tls = "none"
TOML
start_notifier "$bin" "$notifier_addr" "$out/notifier.toml" "$out/notifier.log"
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_before=$(proc_ticks "$notifier")

step "lifecycle: $rate purchases/s for ${seconds}s, shares $shares (mark-paid)"
status=0
"$bin/flashgate-loadtest" run --target "http://$addr" --quiet --scenario lifecycle --mode open \
  --rate "$rate" --duration "${seconds}s" --shoppers $((rate * seconds)) \
  --stock $((rate * seconds)) --lifecycle-shares "$shares" --pay-with mark-paid \
  --connections 32 --json "$out/lifecycle.json" >"$out/lifecycle.md" 2>"$out/lifecycle.err" ||
  status=$?
cat "$out/lifecycle.err" "$out/lifecycle.md" >&2
[ "$status" -le 1 ] || { echo "the load test failed (exit $status)" >&2; exit 2; }

paid=$(mysql_cmd -N "$run" -e "SELECT COUNT(*) FROM orders WHERE status = 'paid'")
step "waiting (up to ${drain}s) for the webhooks of $paid paid orders"
delivered() { python3 -c 'import json,sys; print(len({json.loads(l)["event_id"] for l in open(sys.argv[1]) if l.strip()}))' "$hooks"; }
for _ in $(seq 1 $((drain * 2))); do
  [ "$(delivered)" -ge "$paid" ] && break
  sleep 0.5
done
ticks_after=$(proc_ticks "$notifier")
mysql_cmd -N "$run" -e "SELECT channel, status, COUNT(*), MAX(attempts) FROM notification_deliveries GROUP BY channel, status" \
  >"$out/deliveries.tsv" 2>&1 || true

step "summary ($out/summary.md)"
python3 - "$hooks" "$paid" "$ticks_before" "$ticks_after" "$(getconf CLK_TCK)" "$out/lifecycle.json" \
  "$out/deliveries.tsv" <<'PY' | tee "$out/summary.md"
import datetime, json, re, sys
hooks, paid, t0, t1, hz, report, table = sys.argv[1:8]
paid, hz = int(paid), int(hz)
lines = [json.loads(l) for l in open(hooks) if l.strip()]
seen, rows, dups, bad = set(), [], 0, 0
for l in lines:
    if not l["signature_verified"]:
        bad += 1
        continue
    if l["event_id"] in seen:
        dups += 1
        continue
    seen.add(l["event_id"])
    # RFC 3339 with up to 9 fractional digits: Python's parser takes 6 at most.
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", l["event"]["occurred_at"]).replace("Z", "+00:00")
    occurred = datetime.datetime.fromisoformat(stamp)
    rows.append((l["received_at_ms"], occurred.timestamp() * 1000.0))
rows.sort()
def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")
lat = [a - o for a, o in rows]
last_paid = max((o for _, o in rows), default=0)
during = [a for a, _ in rows if a <= last_paid]
after = [a for a, _ in rows if a > last_paid]
r = json.load(open(report))
held = "all held" if all(c["held"] for c in r["invariants"]) else "BROKEN"
statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r["status_counts"].items()))
print(f"- paid orders (MySQL): {paid}; webhooks received: {len(lines)} requests, {len(rows)} distinct "
      f"verified events, {dups} duplicates, {bad} failed signatures; load test: {statuses}; invariants {held}")
if len(during) > 1:
    print(f"- deliveries/s while orders were being paid: {len(during)} in "
          f"{(during[-1] - during[0]) / 1000:.1f} s = {len(during) / ((during[-1] - during[0]) / 1000):.1f}/s")
if after:
    span = (after[-1] - last_paid) / 1000
    print(f"- drain after the last order.paid: {len(after)} deliveries in {span:.1f} s = "
          f"{len(after) / span if span else float('nan'):.1f}/s")
else:
    print("- drain after the last order.paid: no backlog (every webhook arrived before it)")
print(f"- order.paid occurred_at -> webhook arrival: p50 {pct(lat, 0.5):.0f} ms, p99 {pct(lat, 0.99):.0f} ms, "
      f"max {max(lat, default=float('nan')):.0f} ms (n = {len(lat)})")
cpu = (int(t1) - int(t0)) / hz
print(f"- notifier CPU (user + system): {cpu:.2f} s = {1000 * cpu / len(rows) if rows else float('nan'):.2f} ms per delivery")
print("- notification_deliveries (channel, status, rows, max attempts): "
      + "; ".join(" ".join(l.split("\t")) for l in open(table).read().splitlines()))
PY
[ "$(delivered)" -ge "$paid" ] || { echo "not every paid order's webhook arrived" >&2; exit 1; }
