#!/usr/bin/env bash
# Checks ops/ with promtool (Debian package `prometheus`, installed by scripts/stack.sh): both
# scrape configurations and their rules load, and every alert's unit test in ops/tests passes.
# Run by .ci/run; takes about a second.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool not found: install it with: sudo apt-get install -y prometheus" >&2
  exit 1
fi
promtool check config prometheus/prometheus.yml prometheus/prometheus.local.yml
promtool check rules prometheus/rules/*.yml
promtool test rules tests/*.yml
