# shellcheck shell=bash
# Sourced by scripts/bench.sh and scripts/demo.sh: starts a gateway and a persister in the
# background and waits until the gateway is ready; start_psp starts the virtual payment
# provider, start_saga the payment saga, start_notifier the notifier (and start_smtp_sink a
# loopback SMTP server for its emails).
#
# start_servers BIN GATEWAY_ADDR PERSISTER_ADDR GATEWAY_LOG PERSISTER_LOG
# Sets $gateway and $persister to their pids and a trap that kills both when the calling
# script exits (the caller stops them itself, then clears the trap). The caller's environment
# (such as FLASHGATE__LOG__FILTER) reaches both. Returns non-zero when the gateway is not
# ready within 10 s.
start_servers() {
  local bin=$1 addr=$2 persister_addr=$3 gateway_log=$4 persister_log=$5
  FLASHGATE__GATEWAY__LISTEN=$addr "$bin/flashgate-gateway" serve >"$gateway_log" 2>&1 &
  gateway=$!
  FLASHGATE__PERSISTER__LISTEN=$persister_addr "$bin/flashgate-persister" run >"$persister_log" 2>&1 &
  persister=$!
  trap 'kill "$gateway" "$persister" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    curl -fs "http://$addr/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  curl -fs "http://$addr/readyz" >/dev/null
}

# start_psp BIN ADDR LOG
# Starts the virtual payment provider (flashgate-psp) on ADDR in the background, its log in
# LOG, sets $psp to its pid, and waits until it is ready. Its charges live in memory only:
# they are lost when it stops. The caller's environment (such as FLASHGATE__PSP__LATENCY_MS
# or FLASHGATE__PSP__SLOW_MS) reaches it. The caller stops it (kill "$psp"), and adds it to
# its own trap if it must die with the script. Returns non-zero when it is not ready within
# 10 s.
start_psp() {
  local bin=$1 addr=$2 log=$3
  FLASHGATE__PSP__LISTEN=$addr "$bin/flashgate-psp" serve >"$log" 2>&1 &
  psp=$!
  for _ in $(seq 1 100); do
    curl -fs "http://$addr/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  curl -fs "http://$addr/readyz" >/dev/null
}

# start_saga BIN ADDR PROVIDER_URL LOG
# Starts the payment saga (flashgate-saga) with its health and metrics on ADDR, charging the
# provider at PROVIDER_URL, its log in LOG; sets $saga to its pid and waits until it is ready
# (MySQL and the broker reachable, Redis's scripts loaded). The caller's environment reaches it
# (FLASHGATE__MYSQL__URL, FLASHGATE__REDIS__KEY_PREFIX, ...: the gateway's). The caller stops it
# (kill "$saga"), and adds it to its own trap if it must die with the script. Returns non-zero
# when it is not ready within 20 s.
start_saga() {
  local bin=$1 addr=$2 provider=$3 log=$4
  FLASHGATE__SAGA__LISTEN=$addr FLASHGATE__SAGA__PROVIDER_URL=$provider \
    "$bin/flashgate-saga" run >"$log" 2>&1 &
  saga=$!
  for _ in $(seq 1 200); do
    curl -fs "http://$addr/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  curl -fs "http://$addr/readyz" >/dev/null
}

# start_notifier BIN ADDR CONFIG LOG
# Starts the notifier (flashgate-notifier) with its health and metrics on ADDR, its routes and
# endpoints from the TOML file CONFIG (see config/flashgate.example.toml, [notifier]), its log
# in LOG; sets $notifier to its pid and waits until it is ready (MySQL and the broker
# reachable, the templates loaded). The caller's environment reaches it (FLASHGATE__MYSQL__URL,
# the topics, ...). The caller stops it (kill "$notifier"), and adds it to its own trap if it
# must die with the script. Returns non-zero when it is not ready within 20 s.
start_notifier() {
  local bin=$1 addr=$2 config=$3 log=$4
  FLASHGATE__NOTIFIER__LISTEN=$addr "$bin/flashgate-notifier" --config "$config" run >"$log" 2>&1 &
  notifier=$!
  for _ in $(seq 1 200); do
    curl -fs "http://$addr/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  curl -fs "http://$addr/readyz" >/dev/null
}

# start_smtp_sink PORT OUT
# Starts scripts/smtp_sink.py (Debian's python3-aiosmtpd) on 127.0.0.1:PORT, appending every
# message it receives to OUT as one JSON line; sets $smtp_sink to its pid and waits until it
# listens. The caller stops it (kill "$smtp_sink"). Returns non-zero when it does not listen
# within 10 s.
start_smtp_sink() {
  local port=$1 out=$2
  /usr/bin/python3 scripts/smtp_sink.py --port "$port" --out "$out" >/dev/null 2>&1 &
  smtp_sink=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
