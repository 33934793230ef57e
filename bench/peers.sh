#!/usr/bin/env bash
# Installs the benchmark's peers, runc and crun, from Debian (only what is missing). A peer that
# cannot be installed is reported and skipped: the bench's table then says why its row is empty.
set -uo pipefail

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

cd "$(dirname "$0")/.."
# shellcheck source=quickstart/apt-missing.sh
. ./quickstart/apt-missing.sh
peers=(runc crun)
mapfile -t missing < <(missing_debian_packages "${peers[@]}")
if [ ${#missing[@]} -eq 0 ]; then
    say "benchmark peers present (${peers[*]})"
    exit 0
fi
say "installing the benchmark peers ${missing[*]}"
if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"; } >&2; then
    say "could not install ${missing[*]}; their benchmark rows will say so"
fi
exit 0
