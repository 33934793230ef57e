#!/usr/bin/env bash
# Installs the real tools the operations tests drive, from Debian (only what is missing):
# prometheus and promtool (worker/tests/metrics.rs scrapes /metrics with them), chromium (the
# dashboard test loads the page in it, headless) and systemd's tools (the unit file check).
# Safe to run again: with everything present it only checks dpkg.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=quickstart/apt-missing.sh
. ./quickstart/apt-missing.sh
tools=(prometheus chromium systemd)
mapfile -t missing < <(missing_debian_packages "${tools[@]}")
if [ ${#missing[@]} -eq 0 ]; then
    echo "test tools present (${tools[*]})" >&2
    exit 0
fi
echo "installing the test tools ${missing[*]}" >&2
apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
