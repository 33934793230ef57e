#!/usr/bin/env bash
# Benchmarks lambdaworker side by side with fresh python, runc and crun on this machine and
# prints one report; writes bench/results/latest.json, latest.svg and latest-throughput.svg.
#
#   ./bench/run.sh                 full run (a few minutes)
#   ./bench/run.sh --smoke         a few calls per system: proves the harness works (test-all)
#   ./bench/run.sh --only latency,scaling --calls 500
#   ./bench/run.sh --help          all options
#
# Installs what it needs (only what is missing): the project's dependencies (quickstart/deps.sh)
# and the peers runc and crun from Debian. A peer that cannot be installed or cannot run here is
# reported in the table with the reason; the other rows still run.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

for a in "$@"; do
    if [ "$a" = -h ] || [ "$a" = --help ]; then
        cargo run -q --release --locked -p bench -- --help
        exit 0
    fi
done

if [ "$(id -u)" != 0 ]; then
    echo "bench/run.sh: needs root (sandboxes use namespaces, mounts and cgroups)" >&2
    exit 1
fi

./quickstart/deps.sh

./bench/peers.sh

say "building the bench (cargo build --release -p bench)"
cargo build --release --locked -p bench -p worker 2>&1 | grep -v '^\s*Compiling\|^\s*Checking' >&2 || {
    echo "bench/run.sh: cargo build failed" >&2
    exit 1
}
exec target/release/lambdaworker-bench --worker-bin target/release/worker "$@"
