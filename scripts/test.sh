#!/usr/bin/env bash
# The README's test command: brings the local stack up if needed, then runs every test of
# the workspace against it. Extra arguments go to the test runner (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/build-deps.sh
. scripts/build-deps.sh
ensure_build_deps

scripts/stack.sh up
eval "$(scripts/stack.sh env)"

# Tests whose name contains `failover` stop the shared Redis primary: they run alone, last.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace -E 'not test(/failover/)' "$@"
  cargo nextest run --workspace -E 'test(/failover/)' --no-tests=pass "$@"
else
  echo "cargo-nextest not found; running cargo test (install it with: cargo install cargo-nextest --locked)"
  cargo test --workspace --no-fail-fast "$@" -- --skip failover
  cargo test --workspace --no-fail-fast "$@" -- failover
fi
