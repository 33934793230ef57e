"""The client's mapping of answers to values and errors, asynchronous invocations, listing,
and logs, against a local fake server."""

import base64
import os

import pytest

from lambdaworker import Client, LambdaError, LambdaFunctionError, LambdaPoolError
from lambdaworker._transport import Response
from lambdaworker.client import error_of

from fakeserver import Answer, FakeServer, scripted


def test_a_function_error_is_a_lambda_function_error_with_its_type():
    timed_out = Answer(
        200,
        {
            "errorMessage": "RequestId: r-9 Error: Task timed out after 3.00 seconds",
            "errorType": "Sandbox.Timedout",
            "requestId": "r-9",
            "stackTrace": [],
        },
        {"X-Amz-Function-Error": "Unhandled", "x-amzn-RequestId": "r-9"},
    )
    with FakeServer(scripted([timed_out])) as server:
        with pytest.raises(LambdaFunctionError) as info:
            Client(server.url, access_key="").invoke("slow")
    err = info.value
    assert (err.status, err.reason, err.request_id, err.function_error) == (
        200,
        "Sandbox.Timedout",
        "r-9",
        "Unhandled",
    )
    assert "Task timed out" in str(err) and isinstance(err, LambdaError)


def test_a_handler_error_keeps_its_stack_and_invoke_response_does_not_raise():
    raised = Answer(
        200,
        {
            "errorMessage": "bad",
            "errorType": "ValueError",
            "requestId": "r-1",
            "stackTrace": ['  File "/handler/app.py", line 2, in handler\n    raise ValueError("bad")\n'],
        },
        {"X-Amz-Function-Error": "Unhandled", "X-Amz-Log-Result": base64.b64encode(b"START\nEND\n").decode()},
    )
    with FakeServer(scripted([raised])) as server:
        client = Client(server.url, access_key="")
        response = client.invoke_response("f", tail=True)
        with pytest.raises(LambdaFunctionError) as info:
            response.raise_for_error()
    assert response.function_error == "Unhandled" and response.log_tail == "START\nEND\n"
    assert server.requests[0].headers["x-amz-log-type"] == "Tail"
    assert info.value.reason == "ValueError" and "app.py" in info.value.stack_trace[0]


def test_error_codes_come_from_the_header_or_the_body():
    err = error_of(
        Response(
            403,
            {"x-amzn-ErrorType": "InvalidSignatureException:http://internal"},
            b'{"Type": "User", "message": "The request signature we calculated does not match"}',
        )
    )
    assert (err.status, err.reason) == (403, "InvalidSignatureException") and "signature" in err.message
    err = error_of(Response(404, {}, b'{"error": "no such invocation"}'))
    assert err.reason == "no such invocation"
    err = error_of(Response(502, {}, b"<html>bad gateway</html>"))
    assert (err.reason, err.message) == ("HTTP502", "<html>bad gateway</html>")


def test_error_classes():
    assert issubclass(LambdaPoolError, LambdaError) and issubclass(LambdaFunctionError, LambdaError)
    err = LambdaPoolError(
        "ValueError", "bad", 'Traceback (most recent call last):\n  File "m.py"\nValueError: bad\n'
    )
    assert str(err).startswith("ValueError: bad\n\nRemote traceback:\nTraceback")
    assert str(LambdaFunctionError(None, "ConnectionError", "refused")) == "ConnectionError: refused"


def invocation_server(records):
    """Queues an event (202 with Location), then answers its record with ``records`` in turn."""
    queued = Answer(202, b"", {"Location": "/invocations/inv-1", "x-amzn-RequestId": "r-1"})
    remaining = list(records)

    def handle(request):
        if request.method == "POST":
            return queued
        return Answer(200, remaining.pop(0) if len(remaining) > 1 else remaining[0])

    return handle


def test_invoke_async_then_result_polls_the_record():
    records = [{"status": "queued"}, {"status": "running"}, {"status": "succeeded", "result": {"n": 42}}]
    with FakeServer(invocation_server(records)) as server:
        client = Client(server.url, access_key="")
        invocation = client.invoke_async("f", {"n": 21})
        assert invocation.id == "inv-1"
        assert invocation.result(timeout=10, poll_interval=0.01) == {"n": 42}
    post = server.requests[0]
    assert post.headers["x-amz-invocation-type"] == "Event" and post.json() == {"n": 21}
    assert [r.path for r in server.requests[1:]] == ["/invocations/inv-1"] * 3


def test_a_failed_invocation_raises_its_last_error():
    failed = {
        "status": "failed",
        "error": {"type": "ValueError", "message": "bad"},
        "condition": "RetriesExhausted",
        "request_id": "r-1",
    }
    with FakeServer(invocation_server([failed])) as server:
        with pytest.raises(LambdaFunctionError) as info:
            Client(server.url, access_key="").invoke_async("f").result(timeout=5)
    assert info.value.reason == "ValueError" and "RetriesExhausted" in info.value.message


def test_result_times_out_and_refuses_truncated_results():
    with FakeServer(invocation_server([{"status": "queued"}])) as server:
        with pytest.raises(TimeoutError):
            Client(server.url, access_key="").invoke_async("f").result(timeout=0.2, poll_interval=0.05)
    truncated = {
        "status": "succeeded",
        "result": {"truncated": True, "bytes": 300000},
        "result_truncated": True,
    }
    with FakeServer(invocation_server([truncated])) as server:
        with pytest.raises(LambdaError, match="300000 bytes"):
            Client(server.url, access_key="").invoke_async("f").result(timeout=5)


def test_functions_follows_the_pages():
    pages = {
        None: {"Functions": [{"FunctionName": "a"}], "NextMarker": "a"},
        "a": {"Functions": [{"FunctionName": "b"}]},
    }
    with FakeServer(lambda r: Answer(200, pages[r.query.get("Marker")])) as server:
        names = [f["FunctionName"] for f in Client(server.url, access_key="").functions()]
    assert names == ["a", "b"]
    assert server.requests[0].path == "/2015-03-31/functions/"


def test_logs_merge_the_workers_files_oldest_first(tmp_path):
    d = tmp_path / "f"
    d.mkdir()
    (d / "worker-0.log.1").write_text("2026-01-01T00:00:01.000Z\tr-1\tSTART RequestId: r-1\n")
    (d / "worker-0.log").write_text("2026-01-01T00:00:03.000Z\tr-1\tEND RequestId: r-1\n")
    (d / "worker-1.log").write_text(
        "2026-01-01T00:00:02.000Z\t-\ta\tline with a tab\n2026-01-01T00:00:04.000Z\tr-2\tother\nnot a line\n"
    )
    client = Client("http://127.0.0.1:1", access_key="", log_dir=str(tmp_path))
    lines = client.logs("f")
    assert [(line.text, line.worker) for line in lines] == [
        ("START RequestId: r-1", "worker-0"),
        ("a\tline with a tab", "worker-1"),
        ("END RequestId: r-1", "worker-0"),
        ("other", "worker-1"),
    ]
    assert lines[1].request_id is None
    assert [line.text for line in client.logs("f", request_id="r-2")] == ["other"]
    assert client.logs("no-such-function") == []


def test_logs_without_a_log_directory_say_why(monkeypatch):
    monkeypatch.delenv("LAMBDAWORKER_LOG_DIR", raising=False)
    with pytest.raises(LambdaError, match="no log directory"):
        Client("http://127.0.0.1:1", access_key="").logs("f")
    monkeypatch.setenv("LAMBDAWORKER_LOG_DIR", os.sep)
    assert Client("http://127.0.0.1:1", access_key="").log_dir == os.sep


def test_an_answer_that_is_not_json_is_a_lambda_error():
    with FakeServer(lambda r: Answer(200, b"<html>proxy</html>")) as server:
        with pytest.raises(LambdaError, match="not JSON"):
            Client(server.url, access_key="").invoke("f")
