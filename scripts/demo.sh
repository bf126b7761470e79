#!/usr/bin/env bash
# The README's run command: brings the local stack up, builds flashgate, prepares the database
# and shows the system's pieces working. It grows with each feature of flashgate.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/build-deps.sh
. scripts/build-deps.sh
ensure_build_deps

step() { printf '\n== %s\n' "$*"; }

step "local stack (Redis + Sentinel, MariaDB, Kafka-protocol broker)"
scripts/stack.sh up
eval "$(scripts/stack.sh env)"

step "build"
cargo build --workspace --bins --quiet
bin=target/debug

step "database schema"
"$bin/flashgate-persister" migrate

step "effective gateway configuration (secrets redacted)"
"$bin/flashgate-gateway" config | sed -n '1,12p;/jwt/,/leeway/p'

step "servers"
scripts/stack.sh status
