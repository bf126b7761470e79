# shellcheck shell=bash
# Sourced by scripts/bench.sh and scripts/demo.sh: starts a gateway and a persister in the
# background and waits until the gateway is ready.
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
