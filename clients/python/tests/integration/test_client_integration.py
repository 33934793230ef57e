"""Client against a real worker: invoke, invoke_async, functions, errors, logs, signatures."""

import os
import time

import pytest

from lambdaworker import Client, LambdaFunctionError


def test_invoke_and_its_tail(client, plain_function):
    assert client.invoke(plain_function, {"n": 1}) == {"echo": {"n": 1}}
    response = client.invoke_response(plain_function, {"n": 2}, tail=True)
    assert response.payload == {"echo": {"n": 2}} and response.function_error is None
    assert response.executed_version == "$LATEST" and response.request_id
    assert "hello from plain 2" in response.log_tail
    assert f"END RequestId: {response.request_id}" in response.log_tail


def test_a_handlers_error_and_a_missing_function(client, plain_function):
    with pytest.raises(LambdaFunctionError) as info:
        client.invoke(plain_function, {"raise": "gone"})
    err = info.value
    assert (err.status, err.reason, err.function_error) == (200, "KeyError", "Unhandled")
    assert any("lambda_func.py" in frame for frame in err.stack_trace)
    with pytest.raises(LambdaFunctionError) as info:
        client.invoke("no-such-function")
    assert (info.value.status, info.value.reason) == (404, "ResourceNotFoundException")


def test_invoke_async_and_its_result(client, plain_function):
    invocation = client.invoke_async(plain_function, {"n": 3})
    assert invocation.result(timeout=120) == {"echo": {"n": 3}}
    record = client.invocation(invocation.id).record()
    assert record["status"] == "succeeded" and record["function"] == plain_function


def test_functions_lists_both_kinds(client, plain_function, pool_function):
    names = {f["FunctionName"] for f in client.functions()}
    assert {plain_function, pool_function} <= names
    assert client.get_function(pool_function)["Configuration"]["Handler"] == "lambdaworker_agent.handler"


def test_logs_hold_what_the_handler_printed(client, plain_function):
    request_id = client.invoke_response(plain_function, {"n": "logged"}).request_id
    deadline = time.monotonic() + 10
    while True:
        lines = client.logs(plain_function, request_id=request_id)
        texts = [line.text for line in lines]
        if any(t.startswith("REPORT RequestId") for t in texts) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert "hello from plain logged" in texts
    assert texts[0].startswith("START RequestId: ") and texts[-1].startswith("REPORT RequestId: ")
    assert {line.worker for line in lines} == {"worker-0"}


def test_signatures(client, plain_function, signed):
    """With credentials the worker needs signed calls, and the client's verify; without, an
    unsigned client calls."""
    unsigned = Client(access_key="")
    if not signed:
        assert not client.signed
        assert unsigned.invoke(plain_function, {"n": 4}) == {"echo": {"n": 4}}
        return
    assert client.signed
    assert client.invoke(plain_function, {"n": 5}) == {"echo": {"n": 5}}
    with pytest.raises(LambdaFunctionError) as info:
        unsigned.invoke(plain_function)
    assert (info.value.status, info.value.reason) == (403, "MissingAuthenticationTokenException")
    wrong = Client(access_key=os.environ["LAMBDAWORKER_ACCESS_KEY"], secret_key="not-the-secret")
    with pytest.raises(LambdaFunctionError) as info:
        wrong.invoke(plain_function)
    assert (info.value.status, info.value.reason) == (403, "InvalidSignatureException")
    with pytest.raises(LambdaFunctionError) as info:
        unsigned.delete_function(plain_function)
    assert info.value.status == 403
