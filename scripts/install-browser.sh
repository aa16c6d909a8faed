#!/usr/bin/env bash
# Installs what the headless-browser test of the built-in web page needs
# (tests/browser/ui_check.mjs): Debian's Chromium and the npm package
# playwright-core, pinned by tests/browser/package-lock.json.
#
# playwright-core drives the system Chromium at /usr/bin/chromium; it never
# downloads a browser of its own (that download is refused on the build
# machines). Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! [ -x /usr/bin/chromium ]; then
  log "installing Debian's chromium (headless browser for tests/browser)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "installing Debian's nodejs and npm"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

# `npm ci` only when the installed tree is missing or older than the lock file.
if ! [ -d tests/browser/node_modules/playwright-core ] ||
  [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; then
  log "npm ci in tests/browser (playwright-core, no browser download)"
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
