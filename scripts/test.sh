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
# The console's browser test (api console_browser) drives chromium through playwright-core.
scripts/browser.sh

# Tests in modules named `disruptive` stop shared servers (the Redis primary, MariaDB): they
# run after the others, one at a time. A full run must find some: a renamed module would
# otherwise pass by running nothing. Extra arguments may rightly narrow a pass to no test
# (`scripts/test.sh sentinel` selects only a disruptive one), so then an empty pass is fine.
if [ "$#" -eq 0 ]; then no_tests=fail; else no_tests=pass; fi
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace -E 'not test(/disruptive::/)' --no-tests="$no_tests" "$@"
  cargo nextest run --workspace -E 'test(/disruptive::/)' --test-threads 1 --no-tests="$no_tests" "$@"
else
  echo "cargo-nextest not found; running cargo test (install it with: cargo install cargo-nextest --locked)"
  cargo test --workspace --no-fail-fast "$@" -- --skip disruptive::
  # cargo test passes a filter that matches nothing: count what the serial pass ran.
  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
  cargo test --workspace --no-fail-fast "$@" -- --test-threads 1 disruptive:: | tee "$log"
  if [ "$no_tests" = fail ] && ! grep -qE '^running [1-9][0-9]* tests?$' "$log"; then
    echo "error: the serial pass found no disruptive:: test" >&2
    exit 1
  fi
fi
