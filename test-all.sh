#!/usr/bin/env bash
# The whole test suite: installs what is missing, then style checks, unit and integration tests,
# the end-to-end user flow, and the benchmark in smoke mode. Safe to run again (idempotent set-up, cached base rootfs).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "set-up (quickstart/deps.sh)"
./quickstart/deps.sh
./bench/peers.sh

say "AWS clients for the tests (tests/clients/setup.sh: pinned boto3 and aws-cli in target/client-venv)"
./tests/clients/setup.sh >/dev/null

say "Kubernetes manifests' schema checker (tests/k8s/setup.sh: pinned kubernetes-validate in target/k8s-venv)"
./tests/k8s/setup.sh >/dev/null

say "operations test tools (tests/tools/setup.sh: prometheus, chromium, systemd from Debian)"
./tests/tools/setup.sh

say "Python client: lint and unit tests (clients/python/setup-venv.sh: pinned tools in target/python-client-venv)"
py_venv=$(./clients/python/setup-venv.sh)
py_log=$(mktemp)
(
    cd clients/python
    "$py_venv/bin/ruff" check --quiet .
    "$py_venv/bin/ruff" format --check --quiet .
    "$py_venv/bin/python" -m pytest -q -p no:cacheprovider tests --ignore=tests/integration
) | tee "$py_log"
py_passed=$(grep -Eo '[0-9]+ passed' "$py_log" | awk '{s += $1} END {print s + 0}')
rm -f "$py_log"

say "cargo fmt --check"
cargo fmt --all --check

say "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "base root filesystem cache (built once, then reused)"
warm=$(mktemp -d /tmp/lambdaworker-warm.XXXXXX)
./bin/admin new -cluster "$warm/c"
rm -rf "$warm"

say "cargo test --workspace"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
sum() { grep -E '^test result:' "$log" | sed -E "s/.* ([0-9]+) $1.*/\\1/" | awk '{s += $1} END {print s + 0}'; }
cargo_passed=$(sum passed)
cargo_failed=$(sum failed)

say "end-to-end user flow (tests/e2e.sh)"
e2e_log=$(mktemp)
./tests/e2e.sh | tee "$e2e_log"
e2e_passed=$(grep -c '^  ok:' "$e2e_log" || true)
rm -f "$e2e_log"

say "benchmark, smoke mode (bench/run.sh --smoke: a few calls per system, proves it runs)"
./bench/run.sh --smoke
bench_passed=1

echo
echo "test-all: $((py_passed + cargo_passed + e2e_passed + bench_passed)) passed, $cargo_failed failed"
