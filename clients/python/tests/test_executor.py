"""LambdaExecutor is a concurrent.futures.Executor, against a client whose invocations run the
agent in this process."""

import concurrent.futures as cf

import pytest

from lambdaworker import LambdaExecutor, LambdaPoolError

import poolfuncs
from agentclient import AgentClient


def test_submit_as_completed_wait_and_map():
    client = AgentClient()
    with LambdaExecutor(lambda_function="pool-fn", max_workers=4, client=client) as executor:
        assert isinstance(executor, cf.Executor)
        futures = {executor.submit(poolfuncs.fibonacci, n): n for n in range(15)}
        assert all(isinstance(f, cf.Future) for f in futures)
        got = {futures[f]: f.result() for f in cf.as_completed(futures, timeout=30)}
        assert got == {n: poolfuncs.fibonacci(n) for n in range(15)}
        done, not_done = cf.wait([executor.submit(poolfuncs.add, 1, b=2)], timeout=30)
        assert not not_done and done.pop().result() == 3
        assert list(executor.map(poolfuncs.add, [1, 2], [10, 20])) == [11, 22]
    assert client.most_running <= 4


def test_the_users_exception_is_the_futures():
    with LambdaExecutor("pool-fn", client=AgentClient()) as executor:
        future = executor.submit(poolfuncs.fail, "broken")
        err = future.exception(timeout=30)
    assert isinstance(err, LambdaPoolError) and err.remote_message == "broken"
    with pytest.raises(LambdaPoolError):
        future.result()


def test_no_submit_after_shutdown():
    executor = LambdaExecutor("pool-fn", client=AgentClient())
    executor.shutdown()
    with pytest.raises(RuntimeError):
        executor.submit(poolfuncs.square, 2)
