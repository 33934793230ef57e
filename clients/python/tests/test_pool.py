"""LambdaPool's semantics (multiprocessing.pool.Pool's), against a client whose invocations run
the agent in this process."""

import multiprocessing
import threading

import pytest

from lambdaworker import AsyncResult, LambdaError, LambdaFunctionError, LambdaPool, LambdaPoolError

import poolfuncs
from agentclient import AgentClient

TIMED_OUT = {
    "errorMessage": "Task timed out after 3.00 seconds",
    "errorType": "Sandbox.Timedout",
    "stackTrace": [],
}


def pool_of(client, workers=4):
    return LambdaPool(workers=workers, lambda_function="pool-fn", client=client)


def test_apply_and_apply_async():
    client = AgentClient()
    with pool_of(client) as pool:
        assert pool.apply(poolfuncs.add, (2,), {"b": 3}) == 5
        assert pool.apply(poolfuncs.add, kwds={"a": 10}) == 10
        result = pool.apply_async(poolfuncs.square, (7,))
        assert isinstance(result, AsyncResult)
        assert result.get(timeout=10) == 49
        result.wait()
        assert result.ready() and result.successful()
    assert {name for name, _ in client.events} == {"pool-fn"}


def test_a_result_not_ready_times_out_and_is_not_yet_successful():
    gate = threading.Event()
    with pool_of(AgentClient(gate=gate)) as pool:
        result = pool.apply_async(poolfuncs.square, (3,))
        with pytest.raises(multiprocessing.TimeoutError):
            result.get(timeout=0.05)
        assert not result.ready()
        with pytest.raises(ValueError, match="not ready"):
            result.successful()
        gate.set()
        assert result.get(timeout=10) == 9


def test_map_and_starmap_keep_the_order():
    client = AgentClient()
    with pool_of(client) as pool:
        assert pool.map(poolfuncs.fibonacci, range(20)) == [poolfuncs.fibonacci(n) for n in range(20)]
        assert pool.starmap(poolfuncs.add, [(1, 2), (3, 4)]) == [3, 7]
        assert pool.map(poolfuncs.square, []) == []
        got = []
        result = pool.map_async(poolfuncs.square, range(5), callback=got.append)
        assert result.get(timeout=10) == [0, 1, 4, 9, 16]
        assert pool.starmap_async(poolfuncs.add, [(1, 1)]).get(timeout=10) == [2]
    assert got == [[0, 1, 4, 9, 16]]


def test_chunksize_is_tasks_per_invocation():
    client = AgentClient()
    with pool_of(client) as pool:
        assert pool.map(poolfuncs.square, range(10), chunksize=4) == [x * x for x in range(10)]
        assert len(client.events) == 3
        assert list(pool.imap(poolfuncs.square, range(5), chunksize=2)) == [0, 1, 4, 9, 16]
        assert len(client.events) == 6
        with pytest.raises(ValueError):
            pool.map(poolfuncs.square, range(3), chunksize=0)


def test_imap_in_order_and_imap_unordered_as_they_come():
    with pool_of(AgentClient()) as pool:
        assert list(pool.imap(poolfuncs.square, (x for x in range(30)))) == [x * x for x in range(30)]
        assert sorted(pool.imap_unordered(poolfuncs.square, range(30))) == sorted(x * x for x in range(30))
        # The quick one comes first when unordered, last in order.
        calls = [(0.3, "slow"), (0.0, "quick")]
        assert list(pool.imap_unordered(_star_sleep, calls)) == ["quick", "slow"]
        assert list(pool.imap(_star_sleep, calls)) == ["slow", "quick"]


def _star_sleep(args):
    return poolfuncs.sleep_then(*args)


def test_imap_raises_at_the_failing_item_and_goes_on():
    with pool_of(AgentClient()) as pool:
        it = pool.imap(poolfuncs.fail, ["a", "b"])
        with pytest.raises(LambdaPoolError, match="a"):
            next(it)
        with pytest.raises(LambdaPoolError, match="b"):
            it.next(timeout=10)
        with pytest.raises(StopIteration):
            next(it)


def test_imap_of_an_iterable_that_raises():
    def numbers():
        yield 1
        raise RuntimeError("the iterable broke")

    with pool_of(AgentClient()) as pool:
        it = pool.imap(poolfuncs.square, numbers())
        assert next(it) == 1
        with pytest.raises(RuntimeError, match="broke"):
            next(it)
        assert list(it) == []


def test_imap_next_times_out():
    gate = threading.Event()
    with pool_of(AgentClient(gate=gate)) as pool:
        it = pool.imap(poolfuncs.square, [2])
        with pytest.raises(multiprocessing.TimeoutError):
            it.next(timeout=0.05)
        gate.set()
        assert it.next(timeout=10) == 4


def test_the_users_exception_is_a_pool_error_with_the_remote_traceback():
    errors = []
    with pool_of(AgentClient()) as pool:
        with pytest.raises(LambdaPoolError) as info:
            pool.apply(poolfuncs.fail, ("no luck",))
        result = pool.apply_async(poolfuncs.fail, ("again",), error_callback=errors.append)
        with pytest.raises(LambdaPoolError):
            result.get(timeout=10)
        assert not result.successful()
        with pytest.raises(LambdaPoolError):
            pool.map(poolfuncs.fail, ["x"])
    err = info.value
    assert (err.remote_type, err.remote_message) == ("ValueError", "no luck")
    assert "poolfuncs.py" in err.remote_traceback and "in fail" in err.remote_traceback
    assert "in _run" not in err.remote_traceback  # the agent's own frame is left out
    assert isinstance(errors[0], LambdaPoolError)


def test_a_platform_failure_is_a_lambda_function_error():
    with pool_of(AgentClient(function_error=TIMED_OUT)) as pool:
        with pytest.raises(LambdaFunctionError) as info:
            pool.apply(poolfuncs.square, (2,))
        with pytest.raises(LambdaFunctionError):
            list(pool.imap(poolfuncs.square, [1]))
    assert (info.value.status, info.value.reason) == (200, "Sandbox.Timedout")


def test_an_unpicklable_result_is_a_pool_error():
    with pool_of(AgentClient()) as pool:
        with pytest.raises(LambdaPoolError, match="could not be pickled"):
            pool.apply(poolfuncs.unpicklable)


def test_at_most_workers_calls_run_at_once():
    client = AgentClient()
    with pool_of(client, workers=3) as pool:
        pool.map(_star_sleep, [(0.05, i) for i in range(12)])
    assert client.most_running == 3


def test_close_join_and_a_closed_pool():
    pool = pool_of(AgentClient())
    result = pool.apply_async(_star_sleep, ((0.1, "done"),))
    with pytest.raises(ValueError, match="still running"):
        pool.join()
    pool.close()
    with pytest.raises(ValueError, match="Pool not running"):
        pool.apply(poolfuncs.square, (1,))
    pool.join()
    assert result.ready() and result.get() == "done"


def test_terminate_drops_the_tasks_not_started():
    gate = threading.Event()
    pool = pool_of(AgentClient(gate=gate), workers=1)
    running = pool.apply_async(poolfuncs.square, (2,))
    waiting = pool.apply_async(poolfuncs.square, (3,))
    pool.terminate()
    gate.set()
    pool.join()
    assert running.get(timeout=10) == 4
    with pytest.raises(LambdaError, match="terminated"):
        waiting.get(timeout=10)


def test_the_context_manager_terminates():
    with pool_of(AgentClient()) as pool:
        pass
    with pytest.raises(ValueError):
        pool.map(poolfuncs.square, [1])
    pool.join()


def test_a_function_that_is_not_a_pool_function():
    class PlainClient(AgentClient):
        def invoke_response(self, name, event=None, *, tail=False):
            from lambdaworker.client import InvokeResponse

            return InvokeResponse(200, {"hello": "world"}, "r-1", None, None, "$LATEST")

    with pool_of(PlainClient()) as pool:
        with pytest.raises(LambdaError, match="did not answer as a pool function"):
            pool.apply(poolfuncs.square, (1,))


def test_a_pool_needs_a_function_and_a_worker():
    with pytest.raises(ValueError):
        LambdaPool(workers=2)
    with pytest.raises(ValueError):
        LambdaPool(workers=0, lambda_function="f", client=AgentClient())


def test_lambdapools_own_option_names_are_taken():
    from lambdaworker.client import client_options

    assert client_options(
        {
            "aws_access_key_id": "AK",
            "aws_secret_access_key": "SK",
            "aws_region_name": "eu-west-1",
            "timeout": 3,
        }
    ) == {
        "access_key": "AK",
        "secret_key": "SK",
        "region": "eu-west-1",
        "timeout": 3,
    }
    import pytest

    with pytest.raises(TypeError, match="not both"):
        client_options({"aws_region_name": "a", "region": "b"})
