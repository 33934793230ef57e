"""HTTP: retries with backoff honouring Retry-After, timeouts, connection reuse, signing and
the environment's defaults, against a local fake server."""

import email.utils
import socket
import sys
import time

import pytest

from lambdaworker import Client, LambdaError, LambdaFunctionError, RetryPolicy
from lambdaworker._transport import parse_retry_after

from fakeserver import Answer, FakeServer, scripted

THROTTLED = Answer(
    429,
    {"Type": "User", "message": "Rate Exceeded."},
    {"x-amzn-ErrorType": "TooManyRequestsException", "Retry-After": "1"},
)
OK = Answer(200, {"ok": True}, {"x-amzn-RequestId": "r-1"})


def client_of(server, sleeps, **options):
    client = Client(server.url, access_key="", **options)
    client._transport._sleep = sleeps.append
    return client


def test_429_is_retried_after_retry_after():
    sleeps = []
    with FakeServer(scripted([THROTTLED, THROTTLED, OK])) as server:
        assert client_of(server, sleeps).invoke("f", {"n": 1}) == {"ok": True}
    assert len(server.requests) == 3
    # At least what the server asked, and not much more (the jitter is under 0.2 s here).
    assert all(1.0 <= s <= 1.2 for s in sleeps), sleeps
    assert [r.json() for r in server.requests] == [{"n": 1}] * 3


def test_503_without_retry_after_backs_off_exponentially():
    sleeps = []
    unavailable = Answer(503, {"message": "shutting down"}, {"x-amzn-ErrorType": "ServiceException"})
    policy = RetryPolicy(max_retries=4, backoff=0.5, max_backoff=1.5)
    with FakeServer(scripted([unavailable] * 4 + [OK])) as server:
        assert client_of(server, sleeps, retry=policy).invoke("f") == {"ok": True}
    bounds = [0.5, 1.0, 1.5, 1.5]
    assert len(sleeps) == 4
    assert all(0 <= s <= b for s, b in zip(sleeps, bounds)), sleeps


def test_retries_spent_raise_the_throttle():
    sleeps = []
    with FakeServer(scripted([THROTTLED])) as server:
        with pytest.raises(LambdaFunctionError) as info:
            client_of(server, sleeps, retry=RetryPolicy(max_retries=2)).invoke("f")
    assert len(server.requests) == 3 and len(sleeps) == 2
    err = info.value
    assert (err.status, err.reason, err.message) == (429, "TooManyRequestsException", "Rate Exceeded.")


def test_other_errors_are_not_retried():
    sleeps = []
    missing = Answer(
        404,
        {"Type": "User", "Message": "Function not found: f"},
        {"x-amzn-ErrorType": "ResourceNotFoundException"},
    )
    with FakeServer(scripted([missing])) as server:
        with pytest.raises(LambdaFunctionError) as info:
            client_of(server, sleeps).invoke("f")
    assert len(server.requests) == 1 and sleeps == []
    assert (info.value.status, info.value.reason) == (404, "ResourceNotFoundException")
    assert info.value.message == "Function not found: f"


def test_retry_after_forms():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after(date, now=now) <= 30
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_delay_is_at_least_retry_after_and_jittered_below_the_cap():
    policy = RetryPolicy(backoff=1.0, max_backoff=4.0)
    for attempt in range(8):
        assert 0 <= policy.delay(attempt, None) <= min(4.0, 2**attempt)
        assert policy.delay(attempt, 5.0) >= 5.0


def test_read_timeout_is_a_platform_error():
    with FakeServer(scripted([Answer(200, {}, delay=2.0)])) as server:
        with pytest.raises(LambdaFunctionError) as info:
            Client(server.url, access_key="", timeout=(1.0, 0.3)).invoke("f")
    assert info.value.status is None and info.value.reason == "ReadTimeout"


def test_refused_connections_are_retried_then_raised():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = []
    client = Client(f"http://127.0.0.1:{port}", access_key="", retry=RetryPolicy(max_retries=3))
    client._transport._sleep = sleeps.append
    with pytest.raises(LambdaFunctionError) as info:
        client.invoke("f")
    assert info.value.status is None and info.value.reason == "ConnectionError"
    assert len(sleeps) == 3


def test_connections_are_kept_and_reused():
    with FakeServer(scripted([OK])) as server:
        client = Client(server.url, access_key="")
        for _ in range(5):
            client.invoke("f")
    assert len({r.peer for r in server.requests}) == 1


def test_requests_go_to_aws_paths_with_the_invocation_type():
    with FakeServer(scripted([OK])) as server:
        Client(server.url, access_key="").invoke("arn:aws:lambda:us-east-1:000000000000:function:f", [1])
    (request,) = server.requests
    assert request.method == "POST"
    assert (
        request.path
        == "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af/invocations"
    )
    assert request.headers["x-amz-invocation-type"] == "RequestResponse"
    assert request.json() == [1]


def test_signed_requests_carry_sigv4_and_each_retry_is_signed_again():
    sleeps = []
    with FakeServer(scripted([THROTTLED, OK])) as server:
        client = Client(server.url, "AKIDTEST", "secret", region="eu-west-1")
        client._transport._sleep = sleeps.append
        client.invoke("f", {})
    for request in server.requests:
        auth = request.headers["authorization"]
        assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
        assert "/eu-west-1/lambda/aws4_request" in auth
        signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
        assert "host" in signed and "x-amz-date" in signed
        assert "x-amz-date" in request.headers
    assert client.signed


def test_environment_defaults(monkeypatch, no_keys):
    monkeypatch.setenv("LAMBDAWORKER_ENDPOINT", "http://example.test:9000/")
    client = Client()
    assert client.endpoint == "http://example.test:9000" and not client.signed
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDAWS")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    assert Client().signed
    # The platform's own variables come first; an empty access key turns signing off.
    monkeypatch.setenv("LAMBDAWORKER_ACCESS_KEY", "AKIDLW")
    monkeypatch.setenv("LAMBDAWORKER_SECRET_KEY", "lw-secret")
    assert Client()._transport._signer._auth.credentials.access_key == "AKIDLW"
    assert not Client(access_key="").signed


def test_a_bad_endpoint_is_refused():
    with pytest.raises(Exception, match="not an http"):
        Client("localhost:8080")


def test_keys_without_botocore_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "botocore.auth", None)
    with pytest.raises(LambdaError, match=r"pip install 'lambdaworker\[sigv4\]'"):
        Client("http://127.0.0.1:1", "AKIDTEST", "secret")
