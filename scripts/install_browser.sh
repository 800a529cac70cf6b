#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (tests/admin/test_admin_browser.py).
# Idempotent: does nothing when /usr/bin/chromium is there. Never downloads a browser
# build of its own (no `playwright install`): Playwright drives the system's Chromium.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "install-browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) is installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: no apt-get here; install Chromium with your package manager" \
        "(the browser tests look for chromium, chromium-browser or google-chrome on PATH," \
        "or CHROMIUM=/path/to/chrome)" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-browser: run as root (or install sudo) to apt-get install chromium" >&2
        exit 1
    fi
    sudo="sudo"
fi
echo "install-browser: apt-get install chromium"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# fonts-liberation: the screenshots need text fonts on a minimal image.
$sudo apt-get install -y -qq chromium fonts-liberation >/dev/null
/usr/bin/chromium --version 2>/dev/null || true
