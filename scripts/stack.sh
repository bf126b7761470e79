#!/usr/bin/env bash
# scripts/stack.sh — run a local stack of REAL servers on loopback for flashgate's
# integration tests and the demo. No containers: plain processes with pid files.
#
#   Redis primary     127.0.0.1:6390   (AOF, everysec)
#   Redis replica     127.0.0.1:6391   (replicaof 6390 at first start)
#   Redis Sentinels   127.0.0.1:26390, :26391, :26392  (master name "flashgate", quorum 2)
#   MariaDB           127.0.0.1:3307   (database + user "flashgate"/"flashgate")
#   tansu broker      127.0.0.1:19092  (Kafka protocol, sqlite storage, flashgate.* topics)
#
# Everything (configs, data, logs, pid files, the dev JWT secret) lives in
# ${FLASHGATE_STACK_DIR:-<repo root>/.stack}, which is git-ignored. Data survives
# `down`/`up`; delete that folder to start from scratch.
#
# Usage: scripts/stack.sh up|down|status|env|stop SERVICE|start SERVICE   (see --help)
set -euo pipefail

# --------------------------------------------------------------------------- settings

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
DIR=${FLASHGATE_STACK_DIR:-$REPO_ROOT/.stack}
[[ $DIR == /* ]] || DIR=$PWD/$DIR
DIR=${DIR%/}
RUN=$DIR/run
LOG=$DIR/log

HOST=127.0.0.1
MASTER_NAME=flashgate
REDIS_PRIMARY_PORT=6390
REDIS_PORTS=(6390 6391)
SENTINEL_PORTS=(26390 26391 26392)
MYSQL_PORT=3307
MYSQL_DB=flashgate
MYSQL_USER=flashgate
MYSQL_PASSWORD=flashgate
KAFKA_PORT=19092
# name:partitions (replication factor is always 1: single broker)
TOPICS=(flashgate.orders:4 flashgate.coupons:4 flashgate.points:4 flashgate.compensations:2 flashgate.order-events:4 flashgate.payments:4 flashgate.dead-letter:1)
SERVICES=(redis-6390 redis-6391 sentinel-26390 sentinel-26391 sentinel-26392 mariadb tansu)

READY_TIMEOUT=${FLASHGATE_STACK_TIMEOUT:-60}  # seconds per server
STOP_TIMEOUT=20                               # seconds between TERM and KILL
CARGO_HOME_DIR=${CARGO_HOME:-$HOME/.cargo}
APT_PACKAGES=(redis-server redis-sentinel mariadb-server mariadb-client sqlite3 prometheus python3-aiosmtpd)

# --------------------------------------------------------------------------- helpers

usage() {
  cat <<EOF
Usage: scripts/stack.sh COMMAND

Runs a local flashgate stack of real servers on 127.0.0.1 (no Docker).
Data dir: \${FLASHGATE_STACK_DIR:-<repo>/.stack}  (now: $DIR)

Commands:
  up                 install missing tools, start every server not running, wait until all answer
  down [--kill]      stop everything this script started (TERM, KILL after ${STOP_TIMEOUT}s); data stays
  status             one line per server; exit 0 if all run, 3 otherwise
  env                print export lines:  eval "\$(scripts/stack.sh env)"
  stop SERVICE [--kill]   stop one server (--kill: SIGKILL immediately)
  start SERVICE      start one server and wait until it answers
  -h, --help         this text

Services: ${SERVICES[*]}
Ports:    redis 6390 (primary) / 6391 (replica), sentinels 26390-26392 (master "$MASTER_NAME"),
          mariadb $MYSQL_PORT, tansu (Kafka) $KAFKA_PORT
Env:      FLASHGATE_STACK_DIR (data dir), FLASHGATE_STACK_TIMEOUT (readiness timeout, default 60 s)
EOF
}

say() { printf '%s\n' "$*"; }
warn() { printf 'stack.sh: %s\n' "$*" >&2; }
die() {
  warn "$*"
  exit 1
}

# find_bin NAME... — print the path of the first NAME found on PATH or in the sbin dirs.
find_bin() {
  local name d
  for name in "$@"; do
    if command -v "$name" >/dev/null 2>&1; then
      command -v "$name"
      return 0
    fi
    for d in /usr/sbin /usr/local/sbin /sbin; do
      if [[ -x $d/$name ]]; then
        printf '%s\n' "$d/$name"
        return 0
      fi
    done
  done
  return 1
}

tansu_bin() {
  if command -v tansu >/dev/null 2>&1; then
    command -v tansu
  elif [[ -x $CARGO_HOME_DIR/bin/tansu ]]; then
    printf '%s\n' "$CARGO_HOME_DIR/bin/tansu"
  else
    return 1
  fi
}

# Single-quote a value for the shell.
shquote() {
  local q="'\\''"
  printf "'%s'" "${1//\'/$q}"
}

is_service() {
  local s
  for s in "${SERVICES[@]}"; do [[ $s == "$1" ]] && return 0; done
  return 1
}

svc_port() {
  case $1 in
    redis-* | sentinel-*) printf '%s\n' "${1#*-}" ;;
    mariadb) printf '%s\n' "$MYSQL_PORT" ;;
    tansu) printf '%s\n' "$KAFKA_PORT" ;;
  esac
}

svc_pidfile() { printf '%s\n' "$RUN/$1.pid"; }
svc_log() { printf '%s\n' "$LOG/$1.log"; }

mysql_sock() { printf '%s\n' "$RUN/mariadb.sock"; }
tansu_db() { printf '%s\n' "$DIR/tansu/tansu.db"; }

# Is PID alive (and not a zombie) and running the program we expect for SERVICE?
pid_matches() {
  local svc=$1 pid=$2 comm state
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/stat ]] || return 1
  state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $state != Z && $state != X ]] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  case $svc in
    redis-*) [[ $comm == redis-server* ]] ;;
    sentinel-*) [[ $comm == redis-sentinel* || $comm == redis-server* ]] ;;
    mariadb) [[ $comm == mariadbd* || $comm == mysqld* ]] ;;
    tansu) [[ $comm == tansu* ]] ;;
    *) return 1 ;;
  esac
}

# Print the pid of SERVICE if its pid file points at a live process of the right kind.
svc_pid() {
  local pidfile pid
  pidfile=$(svc_pidfile "$1")
  [[ -s $pidfile ]] || return 1
  pid=$(tr -dc '0-9' <"$pidfile")
  pid_matches "$1" "$pid" || return 1
  printf '%s\n' "$pid"
}

pid_gone() {
  local state
  [[ -r /proc/$1/stat ]] || return 0
  state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 0
  [[ $state == Z || $state == X ]]
}

rcli() { timeout 3 redis-cli -h "$HOST" -p "$@" 2>/dev/null; }

tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

mysql_root() {
  local client
  client=$(find_bin mariadb mysql) || return 1
  "$client" --no-defaults --protocol=socket --socket="$(mysql_sock)" -uroot --connect-timeout=3 "$@"
}

mysql_ping() {
  local admin
  admin=$(find_bin mariadb-admin mysqladmin) || return 1
  "$admin" --no-defaults --protocol=socket --socket="$(mysql_sock)" -uroot --connect-timeout=2 ping >/dev/null 2>&1
}

# Fields of "SENTINEL MASTER flashgate" as "key value" lines, from sentinel on PORT.
sentinel_master_field() {
  rcli "$1" SENTINEL MASTER "$MASTER_NAME" | awk -v k="$2" 'NR % 2 == 1 { key = $0 } NR % 2 == 0 && key == k { print; exit }'
}

sentinel_master_addr() {
  local out
  out=$(rcli "$1" SENTINEL GET-MASTER-ADDR-BY-NAME "$MASTER_NAME") || return 1
  out=$(printf '%s\n' "$out" | paste -sd: -)
  [[ $out =~ ^[0-9.]+:[0-9]+$ ]] || return 1
  printf '%s\n' "$out"
}

# Basic liveness: does the server answer at all?
svc_answers() {
  local svc=$1 port
  port=$(svc_port "$svc")
  case $svc in
    redis-* | sentinel-*) [[ $(rcli "$port" PING) == PONG ]] ;;
    mariadb) mysql_ping ;;
    tansu) tcp_open "$port" ;;
  esac
}

running_other_sentinels() {
  local p n=0
  for p in "${SENTINEL_PORTS[@]}"; do
    [[ sentinel-$p == "$1" ]] && continue
    if svc_pid "sentinel-$p" >/dev/null; then n=$((n + 1)); fi
  done
  printf '%s\n' "$n"
}

# Readiness used when waiting after a start (stricter than svc_answers for sentinels).
svc_ready() {
  local svc=$1 port others slaves
  port=$(svc_port "$svc")
  case $svc in
    sentinel-*)
      sentinel_master_addr "$port" >/dev/null || return 1
      others=$(sentinel_master_field "$port" num-other-sentinels)
      slaves=$(sentinel_master_field "$port" num-slaves)
      # It must know every other sentinel that is running (they find each other via
      # hello messages every ~2 s) and at least one replica, so a failover can happen.
      [[ ${others:-0} -ge $(running_other_sentinels "$svc") && ${slaves:-0} -ge 1 ]]
      ;;
    *) svc_answers "$svc" ;;
  esac
}

show_log_tail() {
  local f=$1
  if [[ -s $f ]]; then
    warn "---- last 25 lines of $f ----"
    tail -n 25 "$f" >&2
    warn "----"
  else
    warn "(log $f is empty or missing)"
  fi
}

fail_service() {
  local svc=$1 why=$2
  warn "$svc: $why"
  show_log_tail "$(svc_log "$svc")"
  if [[ $svc == mariadb && -s $LOG/mariadb-install.log ]]; then show_log_tail "$LOG/mariadb-install.log"; fi
  exit 1
}

# wait_ready SERVICE — wait up to READY_TIMEOUT s; fail fast if the process died.
wait_ready() {
  local svc=$1 deadline pidfile pid
  deadline=$((SECONDS + READY_TIMEOUT))
  pidfile=$(svc_pidfile "$svc")
  while :; do
    svc_ready "$svc" && return 0
    if [[ -s $pidfile ]]; then
      pid=$(tr -dc '0-9' <"$pidfile")
      if [[ -n $pid ]] && pid_gone "$pid"; then
        fail_service "$svc" "process $pid exited during startup"
      fi
    fi
    ((SECONDS < deadline)) || fail_service "$svc" "did not become ready within ${READY_TIMEOUT}s (port $(svc_port "$svc"))"
    sleep 0.2
  done
}

# wait_answers SERVICE — like wait_ready, but only for the basic liveness check.
wait_answers() {
  local svc=$1 deadline
  deadline=$((SECONDS + READY_TIMEOUT))
  until svc_answers "$svc"; do
    ((SECONDS < deadline)) || fail_service "$svc" "did not answer within ${READY_TIMEOUT}s (port $(svc_port "$svc"))"
    sleep 0.1
  done
}

# Refuse to start if something we do not know about already owns the port.
check_port_free() {
  local svc=$1 port
  port=$(svc_port "$svc")
  if tcp_open "$port"; then
    die "$svc: port $HOST:$port is already in use by a process stack.sh did not start (no live pid in $(svc_pidfile "$svc")); stop it first"
  fi
}

ensure_dirs() {
  mkdir -p "$DIR" "$RUN" "$LOG"
}

# Serialize up/down/start/stop. Servers are launched with fd 9 closed so they never hold the lock.
take_lock() {
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$RUN/stack.lock"
  if ! flock -n 9; then
    say "waiting for another stack.sh in $DIR ..."
    flock 9
  fi
}

jwt_secret() {
  local f=$DIR/jwt-secret tmp
  if [[ ! -s $f ]]; then
    mkdir -p "$DIR"
    tmp=$(mktemp "$DIR/.jwt-secret.XXXXXX")
    chmod 600 "$tmp"
    head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp"
    mv -f "$tmp" "$f"
  fi
  chmod 600 "$f"
  cat "$f"
}

# --------------------------------------------------------------------------- install

ensure_tools() {
  local missing=() pkgs=() p
  find_bin redis-server >/dev/null || { missing+=(redis-server); pkgs+=(redis-server); }
  find_bin redis-sentinel >/dev/null || { missing+=(redis-sentinel); pkgs+=(redis-sentinel); }
  find_bin redis-cli >/dev/null || { missing+=(redis-cli); pkgs+=(redis-tools); }
  find_bin mariadbd mysqld >/dev/null || { missing+=(mariadbd); pkgs+=(mariadb-server); }
  find_bin mariadb-install-db mysql_install_db >/dev/null || { missing+=(mariadb-install-db); pkgs+=(mariadb-server); }
  find_bin mariadb mysql >/dev/null || { missing+=(mariadb); pkgs+=(mariadb-client); }
  find_bin mariadb-admin mysqladmin >/dev/null || { missing+=(mariadb-admin); pkgs+=(mariadb-client); }
  find_bin sqlite3 >/dev/null || { missing+=(sqlite3); pkgs+=(sqlite3); }
  # promtool checks ops/'s alert rules (ops/check.sh); the stack never runs Prometheus itself.
  find_bin promtool >/dev/null || { missing+=(promtool); pkgs+=(prometheus); }
  # The notifier's tests receive their emails with scripts/smtp_sink.py (Debian's aiosmtpd).
  /usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || { missing+=(aiosmtpd); pkgs+=(python3-aiosmtpd); }

  if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      say "installing missing tools (${missing[*]}): apt-get install ${APT_PACKAGES[*]}"
      say "(Debian may start its own redis/mariadb services on 6379/3306; this stack never uses them)"
      apt-get update
      DEBIAN_FRONTEND=noninteractive apt-get install -y "${APT_PACKAGES[@]}"
    else
      # de-duplicate the package list
      local uniq=()
      for p in "${pkgs[@]}"; do [[ " ${uniq[*]} " == *" $p "* ]] || uniq+=("$p"); done
      warn "missing tools: ${missing[*]}"
      warn "install them with:  sudo apt-get install -y ${uniq[*]}"
      exit 1
    fi
  fi

  if ! tansu_bin >/dev/null; then
    local cargo
    cargo=$(command -v cargo || { [[ -x $CARGO_HOME_DIR/bin/cargo ]] && printf '%s\n' "$CARGO_HOME_DIR/bin/cargo"; }) ||
      die "tansu (Kafka-protocol broker) is missing and cargo is not installed; install Rust (https://rustup.rs), then: cargo install tansu --locked --features dynostore,libsql"
    say "installing tansu with cargo (takes ~10 minutes): cargo install tansu --locked --features dynostore,libsql"
    "$cargo" install tansu --locked --features dynostore,libsql
    tansu_bin >/dev/null || die "cargo install tansu finished but no tansu binary in PATH or $CARGO_HOME_DIR/bin"
  fi
}

# --------------------------------------------------------------------------- redis + sentinel

redis_conf() { printf '%s\n' "$DIR/redis-$1/redis.conf"; }
sentinel_conf() { printf '%s\n' "$DIR/sentinel-$1/sentinel.conf"; }

# Written only the first time: afterwards Sentinel owns the replication settings (CONFIG REWRITE).
write_redis_conf() {
  local port=$1 conf
  conf=$(redis_conf "$port")
  [[ -f $conf ]] && return 0
  mkdir -p "$DIR/redis-$port"
  {
    echo "# flashgate local stack — generated by scripts/stack.sh on first start."
    echo "# Sentinel may rewrite this file (replicaof) after a failover; that is expected."
    echo "bind $HOST"
    echo "port $port"
    echo "daemonize yes"
    echo "pidfile $RUN/redis-$port.pid"
    echo "logfile $LOG/redis-$port.log"
    echo "dir $DIR/redis-$port"
    echo "appendonly yes"
    echo "appendfsync everysec"
    echo "save \"\""
    echo "maxmemory-policy noeviction"
    if ((port != REDIS_PRIMARY_PORT)); then
      echo "replicaof $HOST $REDIS_PRIMARY_PORT"
    fi
  } >"$conf"
}

write_sentinel_conf() {
  local port=$1 conf
  conf=$(sentinel_conf "$port")
  [[ -f $conf ]] && return 0
  mkdir -p "$DIR/sentinel-$port"
  {
    echo "# flashgate local stack — generated by scripts/stack.sh on first start; Sentinel rewrites it."
    echo "bind $HOST"
    echo "port $port"
    echo "daemonize yes"
    echo "pidfile $RUN/sentinel-$port.pid"
    echo "logfile $LOG/sentinel-$port.log"
    echo "dir $DIR/sentinel-$port"
    echo "sentinel monitor $MASTER_NAME $HOST $REDIS_PRIMARY_PORT 2"
    echo "sentinel down-after-milliseconds $MASTER_NAME 2000"
    echo "sentinel failover-timeout $MASTER_NAME 10000"
    echo "sentinel parallel-syncs $MASTER_NAME 1"
  } >"$conf"
}

# Where running Sentinels currently say the primary is (empty if none answers).
current_primary() {
  local p
  for p in "${SENTINEL_PORTS[@]}"; do
    if svc_pid "sentinel-$p" >/dev/null && sentinel_master_addr "$p"; then return 0; fi
  done
  return 0
}

launch_redis() {
  local port=$1 bin primary follow=()
  bin=$(find_bin redis-server) || die "redis-server not found"
  write_redis_conf "$port"
  # A node restarted after a failover would come back as a second primary until Sentinel
  # demotes it; if Sentinel already knows a different primary, start as its replica.
  primary=$(current_primary)
  if [[ -n $primary && $primary != "$HOST:$port" ]]; then
    follow=(--replicaof "${primary%:*}" "${primary##*:}")
  fi
  # repl-diskless-sync-delay 0: a (re)starting replica syncs at once instead of after 5 s.
  "$bin" "$(redis_conf "$port")" --repl-diskless-sync-delay 0 "${follow[@]}" </dev/null >>"$(svc_log "redis-$port")" 2>&1 9>&-
  if ((${#follow[@]})); then
    REWRITE_CONF+=("redis-$port")
  fi
}

launch_sentinel() {
  local port=$1 bin
  bin=$(find_bin redis-sentinel) || die "redis-sentinel not found"
  write_sentinel_conf "$port"
  "$bin" "$(sentinel_conf "$port")" </dev/null >>"$(svc_log "sentinel-$port")" 2>&1 9>&-
}

# After the nodes and sentinels answer: wait until the primary (as Sentinel sees it)
# has the other node attached as an in-sync replica. Prints a short summary.
wait_redis_replication() {
  local deadline addr mport other link
  deadline=$((SECONDS + READY_TIMEOUT))
  while :; do
    if addr=$(sentinel_master_addr "${SENTINEL_PORTS[0]}"); then
      mport=${addr##*:}
      other=${REDIS_PORTS[0]}
      [[ $mport == "$other" ]] && other=${REDIS_PORTS[1]}
      link=$(rcli "$other" INFO replication | tr -d '\r' | awk -F: '$1 == "master_link_status" { print $2 }')
      if [[ $(rcli "$mport" ROLE | head -n1) == master && $link == up ]] &&
        rcli "$other" INFO replication | tr -d '\r' | grep -qx "master_port:$mport"; then
        say "redis replication: primary $HOST:$mport, replica $HOST:$other in sync"
        return 0
      fi
    fi
    if ((SECONDS >= deadline)); then
      warn "redis replication did not settle within ${READY_TIMEOUT}s (sentinel says primary=${addr:-?}, replica link=${link:-?})"
      show_log_tail "$(svc_log "redis-${REDIS_PORTS[1]}")"
      exit 1
    fi
    sleep 0.3
  done
}

# --------------------------------------------------------------------------- mariadb

mariadb_cnf() { printf '%s\n' "$DIR/mariadb/my.cnf"; }
mariadb_datadir() { printf '%s\n' "$DIR/mariadb/data"; }

write_mariadb_cnf() {
  local cnf
  cnf=$(mariadb_cnf)
  mkdir -p "$DIR/mariadb"
  # Regenerated on every start (it only holds paths and settings, no state).
  {
    echo "# flashgate local stack — generated by scripts/stack.sh"
    echo "[mysqld]"
    if [[ $(id -u) -eq 0 ]]; then echo "user=root"; fi
    echo "datadir=$(mariadb_datadir)"
    echo "socket=$(mysql_sock)"
    echo "port=$MYSQL_PORT"
    echo "bind-address=$HOST"
    echo "pid-file=$(svc_pidfile mariadb)"
    echo "log-error=$(svc_log mariadb)"
    echo "innodb_flush_log_at_trx_commit=1"
    echo "innodb_buffer_pool_size=512M"
    echo "max_connections=500"
    echo "max_allowed_packet=64M"
    echo "character-set-server=utf8mb4"
    echo "collation-server=utf8mb4_unicode_ci"
    echo "performance_schema=OFF"
  } >"$cnf"
}

init_mariadb() {
  local datadir marker installer
  datadir=$(mariadb_datadir)
  marker=$DIR/mariadb/.initialized
  [[ -f $marker ]] && return 0
  if [[ -d $datadir/mysql ]]; then
    touch "$marker"
    return 0
  fi
  installer=$(find_bin mariadb-install-db mysql_install_db) || die "mariadb-install-db not found"
  # A data dir without the system schema is a failed earlier init: start over.
  rm -rf "$datadir"
  mkdir -p "$datadir"
  say "mariadb: initializing data dir $datadir (first run)"
  if ! "$installer" --defaults-file="$(mariadb_cnf)" --auth-root-authentication-method=normal \
    --skip-test-db >"$LOG/mariadb-install.log" 2>&1 9>&-; then
    show_log_tail "$LOG/mariadb-install.log"
    die "mariadb: mariadb-install-db failed"
  fi
  touch "$marker"
}

launch_mariadb() {
  local bin sock
  bin=$(find_bin mariadbd mysqld) || die "mariadbd not found"
  sock=$(mysql_sock)
  ((${#sock} < 108)) || die "mariadb: socket path $sock is too long for a unix socket (max 107); use a shorter FLASHGATE_STACK_DIR"
  write_mariadb_cnf
  init_mariadb
  rm -f "$sock"
  setsid "$bin" --defaults-file="$(mariadb_cnf)" </dev/null >>"$(svc_log mariadb)" 2>&1 9>&- &
  echo $! >"$(svc_pidfile mariadb)"
}

# Idempotent: database + user for TCP (127.0.0.1) and socket/hostname (localhost) logins.
setup_mariadb_schema() {
  local u
  local sql="CREATE DATABASE IF NOT EXISTS \`$MYSQL_DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
  for u in "'$MYSQL_USER'@'127.0.0.1'" "'$MYSQL_USER'@'localhost'"; do
    sql+=" CREATE USER IF NOT EXISTS $u IDENTIFIED BY '$MYSQL_PASSWORD';"
    sql+=" GRANT ALL PRIVILEGES ON *.* TO $u;"
  done
  mysql_root -e "$sql" 2>>"$(svc_log mariadb)" || fail_service mariadb "creating database/user $MYSQL_DB failed"
}

# --------------------------------------------------------------------------- tansu

# Run tansu (exec: call it in a subshell) with a clean environment for its clap env
# fallbacks, from $DIR/tansu: it reads ./.env (dotenv) and resolves sqlite:// paths
# relative to its working directory.
tansu_exec() {
  local bin setsid=()
  if [[ ${1:-} == --setsid ]]; then
    setsid=(setsid)
    shift
  fi
  bin=$(tansu_bin) || die "tansu not found (run: scripts/stack.sh up)"
  mkdir -p "$DIR/tansu"
  cd "$DIR/tansu"
  exec env -u CLUSTER_ID -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE \
    -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT -u DATA_LAKE -u ICEBERG_CATALOG \
    -u ICEBERG_NAMESPACE -u ICEBERG_WAREHOUSE -u DELTA_DATABASE \
    RUST_LOG="${FLASHGATE_TANSU_LOG:-warn}" "${setsid[@]}" "$bin" "$@"
}

tansu_cmd() { (tansu_exec "$@"); }

launch_tansu() {
  mkdir -p "$DIR/tansu"
  (
    exec 9>&-
    tansu_exec --setsid broker \
      --cluster-id flashgate \
      --listener-url "tcp://$HOST:$KAFKA_PORT" \
      --advertised-listener-url "tcp://$HOST:$KAFKA_PORT" \
      --storage-engine "sqlite://tansu.db"
  ) </dev/null >>"$(svc_log tansu)" 2>&1 &
  echo $! >"$(svc_pidfile tansu)"
}

sqlite_q() { sqlite3 -cmd ".timeout 10000" "$(tansu_db)" "$@"; }

# tansu's sqlite schema has no index on `header`; fetches get slow as topics grow.
ensure_tansu_index() {
  local deadline db
  db=$(tansu_db)
  deadline=$((SECONDS + READY_TIMEOUT))
  until [[ -f $db && $(sqlite_q "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='header';" 2>/dev/null) == 1 ]]; do
    ((SECONDS < deadline)) || fail_service tansu "table 'header' never appeared in $db"
    sleep 0.3
  done
  if [[ $(sqlite_q "SELECT count(*) FROM sqlite_master WHERE type='index' AND name='header_topition_offset';") != 1 ]]; then
    sqlite_q "CREATE INDEX IF NOT EXISTS header_topition_offset ON header(topition, offset_id);" ||
      fail_service tansu "could not create index header_topition_offset in $db"
  fi
}

tansu_topics_json() { tansu_cmd topic list --broker "tcp://$HOST:$KAFKA_PORT" 2>>"$(svc_log tansu)"; }

# Create the flashgate topics that do not exist yet, then verify all are listed.
ensure_topics() {
  local listing spec name parts created=() missing=() out
  listing=$(tansu_topics_json) || fail_service tansu "'tansu topic list' failed"
  for spec in "${TOPICS[@]}"; do
    name=${spec%%:*}
    parts=${spec##*:}
    [[ $listing == *"\"name\":\"$name\""* ]] && continue
    if out=$(tansu_cmd topic create "$name" --broker "tcp://$HOST:$KAFKA_PORT" --partitions "$parts" 2>&1); then
      created+=("$name")
    elif [[ $out == *[Aa]lready* || $out == *TopicAlreadyExists* ]]; then
      :
    else
      printf '%s\n' "$out" >>"$(svc_log tansu)"
      fail_service tansu "creating topic $name failed: $out"
    fi
  done
  listing=$(tansu_topics_json) || fail_service tansu "'tansu topic list' failed"
  for spec in "${TOPICS[@]}"; do
    name=${spec%%:*}
    [[ $listing == *"\"name\":\"$name\""* ]] || missing+=("$name")
  done
  ((${#missing[@]} == 0)) || fail_service tansu "topics missing after creation: ${missing[*]}"
  if ((${#created[@]})); then say "tansu topics created: ${created[*]}"; fi
}

# --------------------------------------------------------------------------- start / stop

# launch_service SERVICE — start it in the background unless it already runs.
# Prints nothing; records it in STARTED (and redis nodes that must rewrite their
# config in REWRITE_CONF).
STARTED=()
REWRITE_CONF=()
launch_service() {
  local svc=$1
  if svc_pid "$svc" >/dev/null; then return 0; fi
  rm -f "$(svc_pidfile "$svc")"
  check_port_free "$svc"
  case $svc in
    redis-*) launch_redis "${svc#redis-}" ;;
    sentinel-*) launch_sentinel "${svc#sentinel-}" ;;
    mariadb) launch_mariadb ;;
    tansu) launch_tansu ;;
  esac
  STARTED+=("$svc")
}

# finish_service SERVICE — wait until it answers, run its post-start setup, print one line.
finish_service() {
  local svc=$1 how=running pid extra=""
  [[ " ${STARTED[*]} " == *" $svc "* ]] && how=started
  wait_ready "$svc"
  case $svc in
    redis-*)
      # Persist a role taken from Sentinel at launch, so the next cold start agrees.
      if [[ " ${REWRITE_CONF[*]} " == *" $svc "* ]]; then rcli "${svc#redis-}" CONFIG REWRITE >/dev/null || true; fi
      extra=", role $(rcli "${svc#redis-}" ROLE | head -n1)"
      ;;
    mariadb) setup_mariadb_schema; extra=", db $MYSQL_DB" ;;
    tansu) ensure_tansu_index; ensure_topics; extra=", ${#TOPICS[@]} topics" ;;
  esac
  pid=$(svc_pid "$svc") || fail_service "$svc" "answers on its port but its pid file $(svc_pidfile "$svc") is missing or stale"
  printf '%-15s %-8s (pid %s, %s:%s%s)\n' "$svc" "$how" "$pid" "$HOST" "$(svc_port "$svc")" "$extra"
}

# stop_services [--kill] SERVICE... — TERM all (or KILL), wait up to STOP_TIMEOUT, KILL stragglers.
stop_services() {
  local sig=TERM svc pid deadline how
  local -A pids=()
  if [[ ${1:-} == --kill ]]; then
    sig=KILL
    shift
  fi
  for svc in "$@"; do
    if pid=$(svc_pid "$svc"); then
      pids[$svc]=$pid
      kill -s "$sig" "$pid" 2>/dev/null || true
    else
      rm -f "$(svc_pidfile "$svc")"
      printf '%-15s %s\n' "$svc" "not running"
    fi
  done
  deadline=$((SECONDS + STOP_TIMEOUT))
  for svc in "${!pids[@]}"; do
    pid=${pids[$svc]}
    how=stopped
    [[ $sig == KILL ]] && how="killed (SIGKILL)"
    while ! pid_gone "$pid"; do
      if ((SECONDS >= deadline)); then
        warn "$svc (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -s KILL "$pid" 2>/dev/null || true
        how="killed (SIGKILL after ${STOP_TIMEOUT}s)"
        sleep 0.2
        break
      fi
      sleep 0.1
    done
    rm -f "$(svc_pidfile "$svc")"
    if [[ $svc == mariadb ]]; then rm -f "$(mysql_sock)"; fi
    printf '%-15s %s (pid %s)\n' "$svc" "$how" "$pid"
  done
}

# --------------------------------------------------------------------------- commands

cmd_up() {
  local t0=$SECONDS svc
  ensure_dirs
  take_lock
  ensure_tools
  jwt_secret >/dev/null
  # Launch everything first (cheap), then wait: the servers boot in parallel.
  # Sentinels go first: their (self-rewritten) config is the record of which node is
  # the primary after failovers, and a redis node launched while they answer follows it.
  for svc in sentinel-26390 sentinel-26391 sentinel-26392; do launch_service "$svc"; done
  for svc in sentinel-26390 sentinel-26391 sentinel-26392; do wait_answers "$svc"; done
  for svc in "${SERVICES[@]}"; do launch_service "$svc"; done
  for svc in "${SERVICES[@]}"; do finish_service "$svc"; done
  wait_redis_replication
  say "stack up in $((SECONDS - t0))s — data in $DIR; use: eval \"\$(scripts/stack.sh env)\""
}

cmd_down() {
  local killopt=()
  [[ ${1:-} == --kill ]] && killopt=(--kill)
  if [[ ! -d $RUN ]]; then
    say "nothing to stop ($RUN does not exist)"
    return 0
  fi
  take_lock
  # Sentinels first, so stopping the primary does not trigger a failover.
  stop_services "${killopt[@]}" sentinel-26390 sentinel-26391 sentinel-26392
  stop_services "${killopt[@]}" tansu redis-6391 redis-6390 mariadb
}

cmd_status() {
  local svc pid port all=0 extra
  for svc in "${SERVICES[@]}"; do
    port=$(svc_port "$svc")
    if pid=$(svc_pid "$svc"); then
      if svc_answers "$svc"; then
        extra=""
        case $svc in
          redis-*) extra=", role $(rcli "$port" ROLE | head -n1)" ;;
          sentinel-*) extra=", primary $(sentinel_master_addr "$port" || echo '?')" ;;
        esac
        printf '%-15s running (pid %s, port %s%s)\n' "$svc" "$pid" "$port" "$extra"
      else
        printf '%-15s NOT ANSWERING (pid %s, port %s)\n' "$svc" "$pid" "$port"
        all=3
      fi
    else
      printf '%-15s stopped\n' "$svc"
      all=3
    fi
  done
  return "$all"
}

cmd_env() {
  local secret
  secret=$(jwt_secret)
  local sentinels="" p
  for p in "${SENTINEL_PORTS[@]}"; do sentinels+="${sentinels:+,}$HOST:$p"; done
  printf 'export FLASHGATE__REDIS__SENTINELS=%s\n' "$(shquote "$sentinels")"
  printf 'export FLASHGATE__REDIS__MASTER_NAME=%s\n' "$(shquote "$MASTER_NAME")"
  printf 'export FLASHGATE__MYSQL__URL=%s\n' "$(shquote "mysql://$MYSQL_USER:$MYSQL_PASSWORD@$HOST:$MYSQL_PORT/$MYSQL_DB")"
  printf 'export FLASHGATE__KAFKA__BROKERS=%s\n' "$(shquote "$HOST:$KAFKA_PORT")"
  printf 'export FLASHGATE__GATEWAY__JWT__SECRET=%s\n' "$(shquote "$secret")"
  printf 'export FLASHGATE_STACK_DIR=%s\n' "$(shquote "$DIR")"
}

cmd_stop() {
  local svc=$1 kill=$2
  ensure_dirs
  take_lock
  if [[ $kill == 1 ]]; then stop_services --kill "$svc"; else stop_services "$svc"; fi
}

cmd_start() {
  local svc=$1
  ensure_dirs
  take_lock
  launch_service "$svc"
  finish_service "$svc"
}

main() {
  local cmd="" svc="" kill=0 arg
  for arg in "$@"; do
    case $arg in
      -h | --help | help) usage; exit 0 ;;
      --kill) kill=1 ;;
      -*) usage >&2; die "unknown option: $arg" ;;
      *)
        if [[ -z $cmd ]]; then cmd=$arg
        elif [[ -z $svc ]]; then svc=$arg
        else usage >&2; die "unexpected argument: $arg"
        fi
        ;;
    esac
  done
  case $cmd in
    "") usage; exit 0 ;;
    up) [[ -z $svc ]] || die "up takes no service"; cmd_up ;;
    down) [[ -z $svc ]] || die "down takes no service"; if ((kill)); then cmd_down --kill; else cmd_down; fi ;;
    status) cmd_status ;;
    env) cmd_env ;;
    stop | start)
      [[ -n $svc ]] || die "$cmd needs a SERVICE: ${SERVICES[*]}"
      is_service "$svc" || die "unknown service '$svc'; one of: ${SERVICES[*]}"
      if [[ $cmd == stop ]]; then cmd_stop "$svc" "$kill"; else cmd_start "$svc"; fi
      ;;
    *) usage >&2; die "unknown command: $cmd" ;;
  esac
}

main "$@"
