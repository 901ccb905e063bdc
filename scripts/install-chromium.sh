#!/bin/sh
# Make sure a headless Chromium is installed, for the tests of `localcode report --html`.
#
# Idempotent: does nothing when `chromium` is already on PATH. Otherwise installs Debian's
# `chromium` package with apt (root needed). Playwright drives this browser through
# `executable_path`; it never downloads a browser of its own.
#
# Usage: sh scripts/install-chromium.sh        (scripts/bootstrap.sh calls it on Linux)
set -eu

log() { echo "install-chromium: $*" >&2; }

if command -v chromium >/dev/null 2>&1; then
    log "chromium already installed: $(command -v chromium)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "no apt-get here: install Chromium yourself (the HTML report tests are skipped without it)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    log "installing chromium needs root: run this script as root (the HTML report tests are skipped without it)"
    exit 0
fi
log "installing chromium (apt)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
log "installed: $(chromium --version 2>/dev/null || echo chromium)"
