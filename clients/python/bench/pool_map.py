#!/usr/bin/env python3
"""Calls per second of ``LambdaPool.map`` against a running worker, at several pool sizes.

    python clients/python/bench/pool_map.py [--endpoint URL] [--workers 1 8 32] [--calls N] [--sleep S]

Each task is one invocation (chunksize 1) of a pool function made for the purpose (created
when missing, with only the agent in it). The task is the builtin ``abs`` (the cost of a call
itself), or ``time.sleep(S)`` with ``--sleep`` (so that the figure shows how calls overlap).
Before measuring, one map of the largest pool starts the sandboxes it needs, so that no
cold start is counted.
"""

import argparse
import time

from lambdaworker import Client, LambdaFunctionError, LambdaPool, deploy


def ensure_function(client: Client, name: str) -> None:
    try:
        if not deploy.is_pool_function(client, name):
            raise SystemExit(f"{name} exists and is not a pool function; choose another --function")
    except LambdaFunctionError as exc:
        if exc.status != 404:
            raise
        deploy.create(client, name, [], max_concurrency=deploy.DEFAULT_MAX_CONCURRENCY)


def measure(client: Client, name: str, workers: int, calls: int, sleep: float) -> float:
    """Calls per second of one ``map`` of ``calls`` tasks over ``workers`` workers."""
    with LambdaPool(workers=workers, lambda_function=name, client=client) as pool:
        started = time.perf_counter()
        if sleep:
            pool.map(time.sleep, [sleep] * calls)
        else:
            assert pool.map(abs, range(-calls, 0)) == list(range(calls, 0, -1))
        return calls / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", help="default: $LAMBDAWORKER_ENDPOINT or http://localhost:8080")
    parser.add_argument(
        "--function", default="lw-bench-pool", help="the pool function (created when missing)"
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--calls", type=int, default=0, help="tasks per map (default: 50 per worker, at least 200)"
    )
    parser.add_argument(
        "--sleep", type=float, default=0.0, help="each task sleeps this long instead of abs()"
    )
    parser.add_argument("--repeat", type=int, default=3, help="maps per pool size; the best is shown")
    args = parser.parse_args()

    client = Client(args.endpoint, pool_size=max(args.workers))
    ensure_function(client, args.function)
    largest = max(args.workers)
    measure(client, args.function, largest, 4 * largest, args.sleep)  # start the sandboxes
    task = f"time.sleep({args.sleep})" if args.sleep else "abs(x)"
    print(f"pool.map of {task}, one invocation per task, against {client.endpoint}")
    print(f"{'workers':>8} {'calls':>6} {'calls/s':>9}")
    for workers in args.workers:
        calls = args.calls or max(200, 50 * workers)
        best = max(measure(client, args.function, workers, calls, args.sleep) for _ in range(args.repeat))
        print(f"{workers:>8} {calls:>6} {best:>9.0f}")


if __name__ == "__main__":
    main()
