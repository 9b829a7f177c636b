#!/usr/bin/env bash
# Debian's headless Chromium, for the test that opens `konduktor report --format html` and
# screenshots its timeline, and for tests/live/test_dashboard_live.py (driven by the playwright pip
# package, which is told to use this browser: nothing is downloaded). Test-only: konduktor
# itself never needs a browser. Idempotent.
set -euo pipefail
command -v chromium >/dev/null && exit 0
[[ $EUID -eq 0 ]] || { echo "chromium is missing; install it as root: apt-get install chromium" >&2; exit 1; }
echo "Installing chromium (Debian package, for the HTML report and dashboard tests)..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
