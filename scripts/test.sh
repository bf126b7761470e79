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

# Tests in modules named `disruptive` stop shared servers (the Redis primary, MariaDB): they
# run after the others, one at a time.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace -E 'not test(/disruptive::/)' "$@"
  cargo nextest run --workspace -E 'test(/disruptive::/)' --test-threads 1 --no-tests=pass "$@"
else
  echo "cargo-nextest not found; running cargo test (install it with: cargo install cargo-nextest --locked)"
  cargo test --workspace --no-fail-fast "$@" -- --skip disruptive::
  cargo test --workspace --no-fail-fast "$@" -- --test-threads 1 disruptive::
fi
