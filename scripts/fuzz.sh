#!/usr/bin/env bash
# CI's contract fuzzing: schemathesis (from PyPI, pinned, installed into the stack's folder)
# sends generated requests to a running gateway on the local stack, once as a shopper and once
# as a manager, and checks every answer against the OpenAPI document the gateway serves
# (gateway/openapi.json): no 5xx, no status, header, content type or body the document does
# not allow, and every request the document forbids refused with a 4xx.
#
# The gateway and the persister run with a database, a Redis key prefix, Kafka topics and a
# consumer group of their own, so a run leaves nobody else's data changed; the database and
# the Redis keys are removed at the end. FLASHGATE_FUZZ_EXAMPLES (default 25) bounds the
# examples per operation and phase; FLASHGATE_FUZZ_SEED makes a run repeatable; extra
# arguments go to `st run` (e.g. --include-operation-id purchase); FLASHGATE_FUZZ_BIN names a
# folder with the binaries built already.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/build-deps.sh
. scripts/build-deps.sh
# shellcheck source=scripts/servers.sh
. scripts/servers.sh
ensure_build_deps

schemathesis_version=4.32.5
examples=${FLASHGATE_FUZZ_EXAMPLES:-25}
seed=${FLASHGATE_FUZZ_SEED:-$RANDOM}
addr=${FLASHGATE_FUZZ_ADDR:-127.0.0.1:8098}
persister_addr=${FLASHGATE_FUZZ_PERSISTER_ADDR:-127.0.0.1:8099}

if curl -s -o /dev/null "http://$addr/healthz"; then
  echo "something answers on $addr already (another fuzz run?); set FLASHGATE_FUZZ_ADDR" >&2
  exit 1
fi
scripts/stack.sh up
eval "$(scripts/stack.sh env)"

# Python 3.11's parser can fail inside hypothesis ("AST constructor recursion depth
# mismatch", a CPython bug fixed in 3.12): the newest Python from 3.12 on at hand, else python3.
python=python3
for candidate in python3.13 python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3 \
  "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3; do
  if "$candidate" -c 'import venv' >/dev/null 2>&1; then
    python=$candidate
    break
  fi
done
py_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
venv=$FLASHGATE_STACK_DIR/schemathesis-$schemathesis_version-py$py_version
if ! [ -x "$venv/bin/st" ]; then
  echo "installing schemathesis $schemathesis_version into $venv"
  if ! "$python" -m venv "$venv"; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    "$python" -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version"
fi

# FLASHGATE_FUZZ_BIN: a folder with flashgate-gateway and flashgate-persister built already.
bin=${FLASHGATE_FUZZ_BIN:-}
if [ -z "$bin" ]; then
  cargo build --quiet -p flashgate-gateway -p flashgate-persister --bins
  bin=target/debug
fi

# Everything this run writes is its own.
run=fuzz_$(date +%s)_$$
mysql_base=${FLASHGATE__MYSQL__URL%/*}
export FLASHGATE__MYSQL__URL=$mysql_base/$run
export FLASHGATE__REDIS__KEY_PREFIX=$run
export FLASHGATE__KAFKA__CONSUMER_GROUP=$run
topics=()
for topic in orders coupons points compensations order_events payments dead_letter; do
  export "FLASHGATE__KAFKA__${topic^^}_TOPIC=$run.$topic"
  topics+=("$run.$topic")
done
# The broker creates no topic by itself (scripts/stack.sh creates the stack's own).
tansu=$(command -v tansu || echo "$HOME/.cargo/bin/tansu")
broker=tcp://${FLASHGATE__KAFKA__BROKERS%%,*}
mysql_cmd() {
  # mysql://user:password@host:port/db
  local rest=${mysql_base#mysql://}
  local cred=${rest%%@*} hostport=${rest#*@}
  mariadb --protocol=tcp -u"${cred%%:*}" -p"${cred#*:}" -h"${hostport%%:*}" -P"${hostport##*:}" "$@"
}
redis_primary() {
  local sentinel=${FLASHGATE__REDIS__SENTINELS%%,*}
  redis-cli -h "${sentinel%:*}" -p "${sentinel##*:}" sentinel get-master-addr-by-name \
    "$FLASHGATE__REDIS__MASTER_NAME" | paste -sd' '
}
cleanup() {
  kill "${gateway:-}" "${persister:-}" 2>/dev/null || true
  wait "${gateway:-}" "${persister:-}" 2>/dev/null || true
  mysql_cmd -e "DROP DATABASE IF EXISTS \`$run\`" || true
  for topic in "${topics[@]}"; do
    "$tansu" topic delete "$topic" --broker "$broker" >/dev/null 2>&1 || true
  done
  local host port
  read -r host port < <(redis_primary) || return 0
  redis-cli -h "$host" -p "$port" --scan --pattern "$run*" |
    xargs -r redis-cli -h "$host" -p "$port" unlink >/dev/null || true
}
trap cleanup EXIT
mysql_cmd -e "CREATE DATABASE \`$run\`"
for topic in "${topics[@]}"; do
  "$tansu" topic create "$topic" --broker "$broker" --partitions 1 >/dev/null
done
"$bin/flashgate-persister" migrate

report=$FLASHGATE_STACK_DIR/fuzz-report
rm -rf "$report"
mkdir -p "$report"
# The built-in rate limits (5 purchases a second per user) would answer most generated
# requests of one user with 429 before they reach the logic behind them; the limiter still
# judges every request, and its headers are checked, at 1,000 a second.
cat >"$report/gateway.toml" <<'TOML'
[[rate_limits]]
class = "purchase"
key = "user"
rate = 1000
[[rate_limits]]
class = "claim"
key = "user"
rate = 1000
[[rate_limits]]
class = "read"
key = "user"
rate = 1000
[[rate_limits]]
class = "admin"
key = "user"
rate = 1000
TOML
export FLASHGATE_CONFIG=$report/gateway.toml

log=$FLASHGATE_STACK_DIR/log/fuzz-gateway.log
plog=$FLASHGATE_STACK_DIR/log/fuzz-persister.log
start_servers "$bin" "$addr" "$persister_addr" "$log" "$plog"
trap cleanup EXIT
command -v jq >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null
}

shopper=$("$bin/flashgate-gateway" token --sub fuzz-shopper --role shopper --ttl 1h)
manager=$("$bin/flashgate-gateway" token --sub fuzz-manager --role manager --ttl 1h)

# Things for the generated requests to find: ids drawn at random reach only the 404s.
api() { # METHOD PATH TOKEN [BODY]: the answer's body; fails on an error status
  curl -sS --fail-with-body -X "$1" "http://$addr$2" -H "authorization: Bearer $3" \
    -H 'content-type: application/json' ${4:+-d "$4"}
}
now() { date -u -d "$1" +%Y-%m-%dT%H:%M:%SZ; }
sale_body() { # SKU QUEUE
  printf '{"sku":"%s","title":"Fuzzed sale","price":1000,"stock":100000,"per_user_limit":100000,"starts_at":"%s","ends_at":"%s"%s}' \
    "$1" "$2" "$(now '+1 hour')" "$3"
}
sales=$(api POST /v1/admin/sales "$manager" "$(sale_body FUZZ-OPEN "$(now '-1 minute')" '')" | jq .sale_id)
queued=$(api POST /v1/admin/sales "$manager" "$(sale_body FUZZ-QUEUED "$(now '+30 minutes')" \
  ",\"queue\":{\"mode\":\"draw\",\"opens_at\":\"$(now '-1 minute')\",\"admit_per_second\":10}")" | jq .sale_id)
sales="$sales, $queued"
policies=$(api POST /v1/admin/coupon-policies "$manager" "$(printf '{"name":"Fuzzed","discount":{"kind":"percent","value":10},"total_quantity":100000,"per_user_limit":100000,"claim_starts_at":"%s","claim_ends_at":"%s","valid_for_seconds":3600}' "$(now '-1 minute')" "$(now '+1 hour')")" | jq .policy_id)
orders=() coupons=() tickets=()
for _ in 1 2 3 4; do
  orders+=("$(api POST "/v1/sales/${sales%%,*}/purchases" "$shopper" '{"quantity":1}' | jq .order_id)")
done
for _ in 1 2 3; do
  coupons+=("$(api POST "/v1/coupon-policies/$policies/claims" "$shopper" | jq .coupon_id)")
done
tickets+=("$(api POST "/v1/sales/$queued/queue" "$shopper" | jq .ticket_id)")
# Points: 1 % of an order once it is paid (a manager marks two paid), credited by the persister.
for order in "${orders[@]:2:2}"; do
  api POST "/v1/admin/orders/${order//\"/}/mark-paid" "$manager" >/dev/null
done
uses=()
for _ in $(seq 1 "$((${FLASHGATE_FUZZ_POINTS_WAIT:-20} * 5))"); do
  [ "$(api GET /v1/me/points "$shopper" | jq .balance)" -ge 2 ] && break
  sleep 0.2
done
echo "points after $SECONDS s: $(api GET /v1/me/points "$shopper")"
for order in "${orders[@]:0:2}"; do
  use=$(api POST /v1/me/points/use "$shopper" "{\"amount\":1,\"order_id\":$order}") &&
    uses+=("$(jq .txid <<<"$use")") || echo "no points to use yet: $use"
done
join() { local IFS=,; echo "$*"; }
cat >"$report/schemathesis.toml" <<TOML
# Every check but positive_data_acceptance: a request the document allows may still be
# refused for what a schema cannot say (an end in the past, a balance too small, a sale
# sold out), with an error the document lists for it.
[checks]
positive_data_acceptance.enabled = false

# /readyz answers 503 while a dependency is slow to answer (the broker, under other tests'
# load): that is what it is for, not a fault. Its body is still checked.
[[operations]]
include-operation-id = "readyz"
checks.not_a_server_error.enabled = false

[dictionaries.sales]
values = [$sales]
[dictionaries.policies]
values = [$policies]
[dictionaries.orders]
values = [$(join "${orders[@]}")]
[dictionaries.coupons]
values = [$(join "${coupons[@]}")]
[dictionaries.tickets]
values = [$(join "${tickets[@]}")]
[dictionaries.uses]
values = [$(join "${uses[@]}" '"use-none"')]

[parameters]
"path.sale_id" = { dictionary = "sales", probability = 0.8 }
"path.policy_id" = { dictionary = "policies", probability = 0.8 }
"path.order_id" = { dictionary = "orders", probability = 0.8 }
"body.order_id" = { dictionary = "orders", probability = 0.8 }
"path.coupon_id" = { dictionary = "coupons", probability = 0.8 }
"path.ticket_id" = { dictionary = "tickets", probability = 0.8 }
"path.txid" = { dictionary = "uses", probability = 0.8 }
TOML

status=0
for role in shopper manager; do
  case $role in
    shopper) token=$shopper filter=(--exclude-tag manager) ;;
    manager) token=$manager filter=(--include-tag manager) ;;
  esac
  echo "== schemathesis as $role (seed $seed, at most $examples examples per operation and phase)"
  # Logging out would revoke the token the rest of the run uses; its tests are the gateway's.
  "$venv/bin/st" --config-file "$report/schemathesis.toml" run "http://$addr/openapi.json" \
    -H "Authorization: Bearer $token" \
    "${filter[@]}" --exclude-operation-id logout \
    --max-examples "$examples" --seed "$seed" \
    --workers 2 --request-timeout 10 \
    --generation-database none \
    --report junit --report-dir "$report/$role" \
    --no-color "$@" || status=1
done
if grep -q 'request failed' "$log"; then
  echo "the gateway logged internal errors (see $log):" >&2
  grep 'request failed' "$log" | head -20 >&2
  status=1
fi
exit "$status"
