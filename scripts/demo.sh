#!/usr/bin/env bash
# The README's run command: brings the local stack up, builds flashgate, starts the gateway,
# with the payment saga and the virtual payment provider, runs a small flash sale against it
# and shows what happened (an order paid through the provider, a declined payment and a
# cancellation whose units are sold again, points), then a rush of a few thousand virtual
# shoppers with flashgate-loadtest, whose report checks the invariants.
#
# Usage: scripts/demo.sh [--keep]
#   --keep  after the demo, leave the gateway and its services running (the console, the
#           metrics, the sales) until Ctrl-C, then shut them down gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 64 ;;
  esac
done
# shellcheck source=scripts/build-deps.sh
. scripts/build-deps.sh
# shellcheck source=scripts/servers.sh
. scripts/servers.sh
ensure_build_deps

step() { printf '\n== %s\n' "$*"; }
addr=${FLASHGATE_DEMO_ADDR:-127.0.0.1:8088}

step "local stack (Redis + Sentinel, MariaDB, Kafka-protocol broker)"
scripts/stack.sh up
eval "$(scripts/stack.sh env)"
# FLASHGATE_DEMO_MYSQL_URL: another (existing) database of the same server, e.g. when the
# stack's own holds old benchmark sales the gateway would restore at start; its sale ids start
# again at 1, so its Redis keys get a prefix of their own (FLASHGATE_DEMO_KEY_PREFIX or fresh).
if [ -n "${FLASHGATE_DEMO_MYSQL_URL:-}" ]; then
  export FLASHGATE__MYSQL__URL=$FLASHGATE_DEMO_MYSQL_URL
  export FLASHGATE__REDIS__KEY_PREFIX=${FLASHGATE_DEMO_KEY_PREFIX:-fgdemo$(date +%s)}
fi

step "build"
cargo build --workspace --bins --quiet
bin=target/debug

step "database schema"
"$bin/flashgate-persister" migrate

step "gateway on $addr, persister beside it"
log=$(mktemp -t flashgate-demo-gateway.XXXXXX.log)
plog=$(mktemp -t flashgate-demo-persister.XXXXXX.log)
start_servers "$bin" "$addr" "${FLASHGATE_DEMO_PERSISTER_ADDR:-127.0.0.1:8089}" "$log" "$plog"
curl -fs "http://$addr/readyz"; echo

psp_addr=${FLASHGATE_DEMO_PSP_ADDR:-127.0.0.1:8090}
saga_addr=${FLASHGATE_DEMO_SAGA_ADDR:-127.0.0.1:8083}
step "the virtual payment provider on $psp_addr, the payment saga beside it"
pslog=$(mktemp -t flashgate-demo-psp.XXXXXX.log)
salog=$(mktemp -t flashgate-demo-saga.XXXXXX.log)
start_psp "$bin" "$psp_addr" "$pslog"
start_saga "$bin" "$saga_addr" "http://$psp_addr" "$salog"
trap 'kill "$gateway" "$persister" "$psp" "$saga" 2>/dev/null || true' EXIT
curl -fs "http://$saga_addr/readyz"; echo

manager=$("$bin/flashgate-gateway" token --sub demo-manager --role manager)
step "the live sale console: http://$addr/console (sign in with this manager token)"
echo "$manager"
starts=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
ends=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)

step "a manager creates a flash sale: 5 units, 2 per shopper"
sale=$(curl -fs "http://$addr/v1/admin/sales" -H "authorization: Bearer $manager" \
  -H 'content-type: application/json' \
  -d "{\"sku\":\"DEMO-SNEAKER\",\"title\":\"Demo sneaker drop\",\"price\":12900,\"stock\":5,\"per_user_limit\":2,\"starts_at\":\"$starts\",\"ends_at\":\"$ends\"}")
echo "$sale"
sale_id=$(printf '%s' "$sale" | sed -E 's/.*"sale_id":([0-9]+).*/\1/')

step "eight shoppers rush in at once (one of them asks for 3)"
results=$(mktemp -d)
rush=()
for i in $(seq 1 8); do
  qty=1; [ "$i" -eq 3 ] && qty=3
  token=$("$bin/flashgate-gateway" token --sub "shopper-$i" --role shopper)
  printf '%s' "$token" >"$results/$i.token"
  curl -s -o "$results/$i.json" -w '%{http_code}' "http://$addr/v1/sales/$sale_id/purchases" \
    -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"quantity\":$qty}" >"$results/$i.status" &
  rush+=($!)
done
wait "${rush[@]}"
for i in $(seq 1 8); do
  printf 'shopper-%s  %s  %s\n' "$i" "$(cat "$results/$i.status")" "$(cat "$results/$i.json")"
done

step "the sale afterwards: remaining and admitted live from Redis, persisted from MySQL"
sleep 2
curl -fs "http://$addr/v1/admin/sales/$sale_id" -H "authorization: Bearer $manager"; echo

step "shopper-1 looks at the order (confirmed once the persister wrote it)"
status_url=$(sed -E 's/.*"status_url":"([^"]+)".*/\1/' "$results/1.json")
curl -fs "http://$addr$status_url" -H "authorization: Bearer $(cat "$results/1.token")"; echo

step "a buyer pays with tok_ok: the saga charges the provider, the order ends paid"
# Orders hold their units until paid, cancelled or expired (the sale's payment window, 10
# minutes by default); the payment request answers at once (202 payment_pending) and the saga
# charges the provider behind it. Points are earned once an order is paid.
buyers=$(grep -l '^202$' "$results"/*.status | xargs -n 1 basename | cut -d. -f1)
buyer=$(printf '%s\n' "$buyers" | sed -n 1p)
canceller=$(printf '%s\n' "$buyers" | sed -n 2p)
decliner=$(printf '%s\n' "$buyers" | sed -n 3p)
auth="authorization: Bearer $(cat "$results/$buyer.token")"
order_id=$(sed -E 's/.*"order_id":"([^"]+)".*/\1/' "$results/$buyer.json")
echo "shopper-$buyer pays: $(curl -fs -X POST "http://$addr/v1/orders/$order_id/payment" -H "$auth" \
  -H 'content-type: application/json' -d '{"payment_token":"tok_ok"}')"
# wait_for_status ORDER_ID AUTH STATUS: polls the order (up to 15 s) and prints it.
wait_for_status() {
  local seen
  for _ in $(seq 1 150); do
    seen=$(curl -fs "http://$addr/v1/orders/$1" -H "$2")
    case $seen in *"\"status\":\"$3\""*) echo "$seen"; return 0 ;; esac
    sleep 0.1
  done
  echo "$seen"; echo "the order did not become $3" >&2; return 1
}
echo "and looks:          $(wait_for_status "$order_id" "$auth" paid)"

# --- notifications (issue 17): the paid order's signed webhook and its email -------------
step "notifications: shopper-$buyer's paid order reaches a signed webhook and an email"
# An operator gives the shopper an address (user_contacts: the gateway never writes it); a
# loopback SMTP sink and a webhook receiver that verifies Flashgate-Signature stand in for the
# world. The notifier's own consumer group starts from the topic's beginning: the receiver
# may get older paid orders too; the demo shows this one's.
notify_dir=$(mktemp -d)
notifier_addr=${FLASHGATE_DEMO_NOTIFIER_ADDR:-127.0.0.1:8084}
smtp_port=${FLASHGATE_DEMO_SMTP_PORT:-2525}
webhook_port=${FLASHGATE_DEMO_WEBHOOK_PORT:-8095}
webhook_secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
mysql_url=${FLASHGATE__MYSQL__URL#mysql://}
mysql_cred=${mysql_url%%@*} mysql_rest=${mysql_url#*@}
mysql_host=${mysql_rest%%/*} mysql_db=${mysql_rest#*/}
mariadb --protocol=tcp -u"${mysql_cred%%:*}" -p"${mysql_cred#*:}" -h"${mysql_host%%:*}" \
  -P"${mysql_host##*:}" "${mysql_db%%\?*}" -e "INSERT INTO user_contacts (user_id, email) \
  VALUES ('shopper-$buyer', 'shopper-$buyer@demo.test') ON DUPLICATE KEY UPDATE email = VALUES(email)"
start_smtp_sink "$smtp_port" "$notify_dir/mail.jsonl"
/usr/bin/python3 scripts/webhook_receiver.py --port "$webhook_port" --secret "$webhook_secret" \
  --out "$notify_dir/webhooks.jsonl" &
webhook_receiver=$!
cat >"$notify_dir/notifier.toml" <<TOML
[notifier]
consumer_group = "flashgate-demo-notifier-$(date +%s)"
templates_dir = "notifier/templates"
[notifier.routes]
"order.paid" = ["webhook:shop", "email"]
[notifier.webhooks.shop]
url = "http://127.0.0.1:$webhook_port/flashgate-events"
secret = "$webhook_secret"
[notifier.email]
host = "127.0.0.1"
port = $smtp_port
tls = "none"
from = "flashgate demo <noreply@demo.test>"
TOML
nlog=$(mktemp -t flashgate-demo-notifier.XXXXXX.log)
start_notifier "$bin" "$notifier_addr" "$notify_dir/notifier.toml" "$nlog"
trap 'kill "$gateway" "$persister" "$psp" "$saga" "$notifier" "$smtp_sink" "$webhook_receiver" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  grep -qs "$order_id" "$notify_dir/webhooks.jsonl" && grep -qs "shopper-$buyer@" "$notify_dir/mail.jsonl" && break
  sleep 0.1
done
echo "webhook: $(grep -s "$order_id" "$notify_dir/webhooks.jsonl" | head -n 1)"
echo "email:   $(grep -s "shopper-$buyer@" "$notify_dir/mail.jsonl" | head -n 1)"
kill "$notifier" "$smtp_sink" "$webhook_receiver" 2>/dev/null || true
wait "$notifier" "$smtp_sink" "$webhook_receiver" 2>/dev/null || true
trap 'kill "$gateway" "$persister" "$psp" "$saga" 2>/dev/null || true' EXIT
rm -rf "$notify_dir"
# --- end of notifications ------------------------------------------------------------------

step "a declined payment (tok_declined) cancels the order; another shopper buys its unit"
declined_id=$(sed -E 's/.*"order_id":"([^"]+)".*/\1/' "$results/$decliner.json")
decline_auth="authorization: Bearer $(cat "$results/$decliner.token")"
echo "shopper-$decliner pays: $(curl -fs -X POST "http://$addr/v1/orders/$declined_id/payment" \
  -H "$decline_auth" -H 'content-type: application/json' -d '{"payment_token":"tok_declined"}')"
echo "and looks:          $(wait_for_status "$declined_id" "$decline_auth" cancelled)"
latecomer=$(grep -L '^202$' "$results"/*.status | xargs -n 1 basename | cut -d. -f1 | sed -n 1p)
late_auth="authorization: Bearer $(cat "$results/$latecomer.token")"
# With an Idempotency-Key (as a client that retries would send) the purchase goes to Redis
# even if this gateway's sold-out mark has not heard the restock message yet.
late=$(curl -s -w '\n%{http_code}' "http://$addr/v1/sales/$sale_id/purchases" -H "$late_auth" \
  -H "idempotency-key: demo-late-$sale_id" -H 'content-type: application/json' -d '{"quantity":1}')
echo "shopper-$latecomer, refused in the rush, buys: $(printf '%s' "$late" | head -n 1) (HTTP $(printf '%s' "$late" | tail -n 1))"
[ "$(printf '%s' "$late" | tail -n 1)" = 202 ] || { echo "the declined unit was not sold again" >&2; exit 1; }

step "a cancellation gives its unit back, and it is sold again"
echo "shopper-$buyer wants a second pair: $(curl -s "http://$addr/v1/sales/$sale_id/purchases" -H "$auth" \
  -H 'content-type: application/json' -d '{"quantity":1}')"
cancelled_id=$(sed -E 's/.*"order_id":"([^"]+)".*/\1/' "$results/$canceller.json")
cancel_auth="authorization: Bearer $(cat "$results/$canceller.token")"
echo "shopper-$canceller cancels: $(curl -fs -X POST "http://$addr/v1/orders/$cancelled_id/cancel" -H "$cancel_auth")"
echo "and looks:           $(curl -fs "http://$addr/v1/orders/$cancelled_id" -H "$cancel_auth")"
# With an Idempotency-Key (as a client that retries would send) the purchase goes to Redis
# even if this gateway's sold-out mark has not heard the cancellation's restock message yet.
bought=$(curl -s -w '\n%{http_code}' "http://$addr/v1/sales/$sale_id/purchases" -H "$auth" \
  -H "idempotency-key: demo-rebuy-$sale_id" -H 'content-type: application/json' -d '{"quantity":1}')
echo "shopper-$buyer tries again: $(printf '%s' "$bought" | head -n 1) (HTTP $(printf '%s' "$bought" | tail -n 1))"
[ "$(printf '%s' "$bought" | tail -n 1)" = 202 ] || { echo "the returned unit was not sold again" >&2; exit 1; }
second_id=$(printf '%s' "$bought" | head -n 1 | sed -E 's/.*"order_id":"([^"]+)".*/\1/')
curl -fs "http://$addr/v1/admin/sales/$sale_id" -H "authorization: Bearer $manager"; echo

step "points: the paid order earned 1 %; 100 go on the new order, then the use is taken back"
for _ in $(seq 1 100); do # the earn is written once the persister stored the payment
  points=$(curl -fs "http://$addr/v1/me/points" -H "$auth")
  [ "$(printf '%s' "$points" | sed -E 's/.*"balance":([0-9]+).*/\1/')" -ge 100 ] && break
  sleep 0.1
done
echo "shopper-$buyer: $points"
used=$(curl -fs "http://$addr/v1/me/points/use" -H "$auth" -H 'content-type: application/json' \
  -d "{\"amount\":100,\"order_id\":\"$second_id\"}")
echo "use:    $used"
txid=$(printf '%s' "$used" | sed -E 's/.*"txid":"([^"]+)".*/\1/')
echo "cancel: $(curl -fs -X POST "http://$addr/v1/me/points/use/$txid/cancel" -H "$auth")"
sleep 1
echo "ledger: $(curl -fs "http://$addr/v1/me/points/history" -H "$auth")"

step "a flash rush: 3,000 virtual shoppers for 500 units (flashgate-loadtest, open loop)"
# A new sale opening in a second; every shopper wants one unit, arriving at 1,500 a second.
# After the rush the load test waits for the persister to write every order, then checks the
# invariants (exit 1 and the evidence if one broke).
report=$(mktemp -t flashgate-demo-report.XXXXXX.json)
"$bin/flashgate-loadtest" run --target "http://$addr" --scenario purchase-rush \
  --shoppers 3000 --stock 500 --rate 1500 --connections 32 --duration 10s --json "$report"
echo "JSON report: $report"

step "a queued sale: shoppers join a waiting room, a verifiable draw orders them at the start"
# The seed is drawn when the sale is created and only its SHA-256 (the commitment) is shown;
# at the start the gateway orders who joined by SHA-256(seed:ticket) and publishes the seed.
q_opens=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
q_starts=$(date -u -d '+6 seconds' +%Y-%m-%dT%H:%M:%SZ)
qsale=$(curl -fs "http://$addr/v1/admin/sales" -H "authorization: Bearer $manager" \
  -H 'content-type: application/json' \
  -d "{\"sku\":\"DEMO-CONSOLE\",\"title\":\"Demo console, behind a waiting room\",\"price\":49900,\"stock\":3,\"per_user_limit\":1,\"starts_at\":\"$q_starts\",\"ends_at\":\"$ends\",\"queue\":{\"mode\":\"draw\",\"opens_at\":\"$q_opens\",\"admit_per_second\":2}}")
qsale_id=$(printf '%s' "$qsale" | sed -E 's/.*"sale_id":([0-9]+).*/\1/')
echo "the room before anyone joins: $(curl -fs "http://$addr/v1/sales/$qsale_id/queue" -H "authorization: Bearer $manager")"
for i in $(seq 1 5); do
  qtoken=$("$bin/flashgate-gateway" token --sub "queuer-$i" --role shopper)
  printf '%s' "$qtoken" >"$results/q$i.token"
  joined=$(curl -fs -X POST "http://$addr/v1/sales/$qsale_id/queue" -H "authorization: Bearer $qtoken")
  printf '%s' "$joined" | sed -E 's/.*"ticket_id":"([^"]+)".*/\1/' >"$results/q$i.ticket"
  echo "queuer-$i joins: $joined"
done
echo "queuer-1 tries to buy without a pass: $(curl -s "http://$addr/v1/sales/$qsale_id/purchases" \
  -H "authorization: Bearer $(cat "$results/q1.token")" -H 'content-type: application/json' -d '{"quantity":1}')"
draw_file=$results/draw.json
for _ in $(seq 1 200); do # the draw runs on the first admitter tick after the start
  curl -fs -o "$draw_file" "http://$addr/v1/sales/$qsale_id/queue/draw" -H "authorization: Bearer $manager" && break
  sleep 0.1
done
echo "the published draw: $(cat "$draw_file")"

step "anyone can check the draw: SHA-256(seed) = commitment, and the seed gives the order"
"$bin/flashgate-batch" verify-draw --sale "$qsale_id" --file "$draw_file"

step "admitted 2 a second in position order, each buys with its signed pass (Queue-Pass)"
for i in $(seq 1 5); do
  qauth="authorization: Bearer $(cat "$results/q$i.token")"
  for _ in $(seq 1 100); do
    ticket=$(curl -fs "http://$addr/v1/sales/$qsale_id/queue/$(cat "$results/q$i.ticket")" -H "$qauth")
    case "$ticket" in *'"status":"admitted"'*) break ;; esac
    sleep 0.2
  done
  pass=$(printf '%s' "$ticket" | sed -E 's/.*"pass":"([^"]+)".*/\1/')
  bought=$(curl -s "http://$addr/v1/sales/$qsale_id/purchases" -H "$qauth" -H "queue-pass: $pass" \
    -H 'content-type: application/json' -d '{"quantity":1}')
  echo "queuer-$i at position $(printf '%s' "$ticket" | sed -E 's/.*"position":([0-9]+).*/\1/'): $bought"
done
echo "the manager's view: $(curl -fs "http://$addr/v1/admin/sales/$qsale_id" -H "authorization: Bearer $manager")"

step "metrics: admissions and the outbox relay"
curl -fs "http://$addr/metrics" | grep -E "^flashgate_(admissions_total|relayed_orders_total|outbox_length\{sale_id=\"$sale_id\")"

step "payments: the saga's outcomes and the provider's charges"
curl -fs "http://$saga_addr/metrics" | grep -E "^flashgate_saga_payments_total" || true
curl -fs "http://$psp_addr/metrics" | grep -E "^flashgate_psp_charges_total" || true

if [ "$keep" = 1 ]; then
  step "left running (--keep): Ctrl-C stops it"
  echo "console:  http://$addr/console   (manager token above, or: $bin/flashgate-gateway token --sub you --role manager)"
  echo "gateway:  http://$addr/docs  http://$addr/metrics   log $log"
  echo "persister http://${FLASHGATE_DEMO_PERSISTER_ADDR:-127.0.0.1:8089}/metrics   log $plog"
  echo "saga:     http://$saga_addr/metrics   log $salog;  provider http://$psp_addr"
  # Ctrl-C (or SIGTERM) ends the wait; the graceful shutdown below runs either way.
  trap 'echo' INT TERM
  wait "$gateway" || true
  trap - INT TERM
fi

step "graceful shutdown (SIGTERM)"
# (after --keep a terminal's Ctrl-C has reached them too: some may be gone already)
kill -TERM "$gateway" "$persister" "$saga" "$psp" 2>/dev/null || true
wait "$gateway" "$persister" "$saga" "$psp" || true
trap - EXIT
rm -rf "$results"
tail -n 3 "$log"
tail -n 1 "$plog"
