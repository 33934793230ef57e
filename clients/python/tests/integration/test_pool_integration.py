"""LambdaPool and LambdaExecutor against a real worker."""

import concurrent.futures as cf
import platform
import time

import pytest

from lambdaworker import LambdaExecutor, LambdaFunctionError, LambdaPool, LambdaPoolError

from algorithms.algorithms import fail, fibonacci, python_version, sleep


def test_pool_map_of_a_deployed_function_gives_the_local_results(pool_function):
    with LambdaPool(workers=8, lambda_function=pool_function) as pool:
        assert pool.map(fibonacci, range(25)) == [fibonacci(n) for n in range(25)]
        assert pool.apply(fibonacci, kwds={"n": 10}) == 55
        assert pool.apply_async(fibonacci, (12,)).get(timeout=60) == 144
        assert list(pool.imap(fibonacci, range(10))) == [fibonacci(n) for n in range(10)]
        assert sorted(pool.imap_unordered(fibonacci, range(10), chunksize=3)) == sorted(
            fibonacci(n) for n in range(10)
        )
        assert pool.starmap(pow, [(2, 10), (3, 3)]) == [1024, 27]


def test_32_workers_run_at_once(pool_function):
    # The function's max concurrency (32, set by create) lets every worker's call run: with
    # the worker's default (4), 64 calls of half a second would take at least 8 s.
    with LambdaPool(workers=32, lambda_function=pool_function) as pool:
        started = time.monotonic()
        assert pool.map(sleep, [0.5] * 64) == [0.5] * 64
        assert time.monotonic() - started < 6


def test_executor_with_as_completed(pool_function):
    with LambdaExecutor(lambda_function=pool_function, max_workers=8) as executor:
        futures = {executor.submit(fibonacci, n): n for n in range(20)}
        got = {futures[f]: f.result() for f in cf.as_completed(futures, timeout=120)}
    assert got == {n: fibonacci(n) for n in range(20)}


def test_the_users_exception_comes_back_with_its_remote_traceback(pool_function):
    with LambdaPool(workers=2, lambda_function=pool_function) as pool:
        with pytest.raises(LambdaPoolError) as info:
            pool.apply(fail, ("no luck",))
    err = info.value
    assert (err.remote_type, err.remote_message) == ("ValueError", "no luck")
    assert '/handler/algorithms/algorithms.py", line' in err.remote_traceback
    assert "in fail" in err.remote_traceback and "raise ValueError(message)" in err.remote_traceback


def test_a_call_over_the_timeout_is_a_function_error(pool_function, pool_timeout):
    with LambdaExecutor(lambda_function=pool_function, max_workers=1) as executor:
        future = executor.submit(sleep, pool_timeout + 5)
        err = future.exception(timeout=120)
    assert isinstance(err, LambdaFunctionError)
    assert (err.status, err.reason) == (200, "Sandbox.Timedout")
    assert f"after {pool_timeout}.00 seconds" in err.message


def test_what_crosses_python_versions(pool_function):
    """By reference and plain data cross; a lambda goes by value, as bytecode, which only
    the same Python version reads."""
    with LambdaPool(workers=1, lambda_function=pool_function) as pool:
        remote = pool.apply(python_version)
        assert pool.apply(sorted, ({"b": [1.5, None], "a": (1, 2)},)) == ["a", "b"]
        same = remote.split(".")[:2] == platform.python_version().split(".")[:2]
        if same:
            assert pool.apply(lambda x: x + 1, (1,)) == 2
        else:
            with pytest.raises(LambdaPoolError, match="does not cross Python versions"):
                pool.apply(lambda x: x + 1, (1,))
