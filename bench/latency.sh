#!/usr/bin/env bash
# Cold and warm call latency of the hello handler through HTTP, on a temporary cluster.
#   cold: N calls, each to a lambda with no warm sandbox (N distinct copies of hello)
#   warm: N calls to one lambda whose sandbox is warm
# Figures are curl's time_total (connect + request + answer), in milliseconds.
# Usage: ./bench/latency.sh [N] (default 200). Needs ./quickstart/deps.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
PORT=${PORT:-18090}
work=$(mktemp -d /tmp/lambdaworker-bench.XXXXXX)
cluster="$work/c"
trap './bin/admin kill -cluster="$cluster" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

./bin/admin new -cluster "$cluster" >/dev/null
./bin/admin setconf -cluster "$cluster" "{\"handler_cache_size\": $((N + 10)), \"log_level\": \"warn\"}" >/dev/null
./bin/admin workers -cluster "$cluster" --port "$PORT" >/dev/null
for i in $(seq 1 "$N"); do cp -r quickstart/handlers/hello "$cluster/registry/hello$i"; done
cp -r quickstart/handlers/hello "$cluster/registry/hello"

call() { curl -sS -o /dev/null -w '%{time_total}\n' -X POST "localhost:$PORT/runLambda/$1" -d '{"name": "bench"}'; }
summary() { sort -n | awk -v what="$1" '{a[NR] = $1 * 1000} END {
    printf "%-5s n=%d  p50=%.2f ms  p90=%.2f ms  p99=%.2f ms  min=%.2f ms\n", what, NR,
        a[int(NR * 0.50 + 0.5)], a[int(NR * 0.90 + 0.5)], a[int(NR * 0.99 + 0.5)], a[1] }'; }

echo "machine: $(nproc) cores, kernel $(uname -r), revision $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
for i in $(seq 1 "$N"); do call "hello$i"; done | summary cold
call hello >/dev/null
for i in $(seq 1 "$N"); do call hello; done | summary warm
