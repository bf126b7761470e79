#!/usr/bin/env bash
# The headless browser of the console's end-to-end test (gateway/tests/browser/console.mjs):
# Debian's chromium (apt-get, only when missing) and playwright-core, pinned, installed with
# npm into the stack's folder ($FLASHGATE_STACK_DIR/browser, .stack/browser by default).
# playwright-core downloads no browser: the test drives the system's chromium. Idempotent and
# quick when everything is there already; says what it did.
set -euo pipefail
cd "$(dirname "$0")/.."

playwright_version=1.65.1
# playwright-core 1.62 and later want Node 20 or newer.
node_major_min=20
dir=${FLASHGATE_STACK_DIR:-$PWD/.stack}/browser

apt_install() {
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "browser: installing $* (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "browser: missing $*; install them first (as root: apt-get install -y $*)" >&2
    exit 1
  fi
}

chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium" ]; then
  apt_install chromium
  chromium=$(command -v chromium)
else
  echo "browser: chromium present ($chromium)"
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt "$node_major_min" ]; then
  echo "browser: node $(node --version) is too old; playwright-core $playwright_version needs" \
    "Node $node_major_min or newer (Debian 13's nodejs, or NodeSource on Debian 12)" >&2
  exit 1
fi
echo "browser: node $(node --version) present"

installed=$(node -p "try { require('$dir/node_modules/playwright-core/package.json').version } catch { '' }")
if [ "$installed" = "$playwright_version" ]; then
  echo "browser: playwright-core $playwright_version present in $dir"
else
  echo "browser: installing playwright-core $playwright_version into $dir (npm)"
  mkdir -p "$dir"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$dir" --save-exact --no-audit \
    --no-fund --loglevel=error "playwright-core@$playwright_version"
fi
