#!/usr/bin/env bash
# Checks ops/ with promtool (Debian package `prometheus`, installed by scripts/stack.sh): both
# scrape configurations and their rules load, every alert's unit test in ops/tests passes, and
# every query of the Grafana dashboards parses.
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

# The dashboard's PromQL parses: each panel query, Grafana's variables given sample values,
# becomes a recording rule that promtool checks.
command -v python3 >/dev/null 2>&1 || { echo "python3 not found (needed to read the dashboard JSON)" >&2; exit 1; }
rules=$(mktemp --suffix=.yml)
trap 'rm -f "$rules"' EXIT
python3 - grafana/dashboards/*.json >"$rules" <<'PY'
import json, sys
print("groups:\n  - name: dashboard-queries\n    rules:")
n = 0
for path in sys.argv[1:]:
    for panel in json.load(open(path))["panels"]:
        for target in panel.get("targets", []):
            expr = (target["expr"].replace("$__rate_interval", "1m")
                    .replace("$route", ".*").replace("$sale", ".+"))
            n += 1
            print(f"      - record: dashboard:query{n}\n        expr: {json.dumps(expr)}")
if n == 0:
    sys.exit("no query found in the dashboards")
PY
promtool check rules "$rules"
