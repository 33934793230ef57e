"""The client of one lambdaworker endpoint: the Invoke API, asynchronous invocations and
their records, the management API's function operations, and function logs."""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional
from urllib.parse import quote

from . import logs as _logs
from ._transport import Response, RetryPolicy, SigV4Signer, TimeoutSpec, Transport
from .errors import LambdaError, LambdaFunctionError

#: The endpoint when neither the argument nor ``LAMBDAWORKER_ENDPOINT`` gives one.
DEFAULT_ENDPOINT = "http://localhost:8080"
#: Connect and read timeouts (seconds): a call may run up to 900 s (the largest ``Timeout``)
#: after waiting for a free sandbox.
DEFAULT_TIMEOUT = (10.0, 960.0)

_API = "/2015-03-31/functions"


def _env(*names: str) -> Optional[str]:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _function_path(name: str, *suffix: str) -> str:
    return "/".join([_API, quote(name, safe=""), *suffix])


def error_of(response: Response) -> LambdaFunctionError:
    """The error an answer that is not a success stands for: AWS's code from
    ``x-amzn-ErrorType`` (or the body's ``Type``/``__type``/``error``), its message from the body."""
    try:
        body = json.loads(response.body) if response.body else {}
    except ValueError:
        body = {"message": response.body.decode("utf-8", "replace")[:2000]}
    if not isinstance(body, dict):
        body = {"message": str(body)}
    code = response.header("x-amzn-ErrorType") or body.get("__type") or body.get("error")
    code = str(code or f"HTTP{response.status}").split(":", 1)[0]
    message = body.get("message") or body.get("Message") or body.get("errorMessage") or ""
    return LambdaFunctionError(
        response.status,
        code,
        str(message),
        request_id=response.header("x-amzn-RequestId"),
    )


def _decode(response: Response) -> Any:
    """The JSON of a successful answer (``None`` when it is empty)."""
    if not response.body:
        return None
    try:
        return json.loads(response.body)
    except ValueError as exc:
        raise LambdaError(f"HTTP {response.status} answer is not JSON: {response.body[:200]!r}") from exc


def _json(response: Response, *, ok: Iterable[int] = (200,)) -> Any:
    if response.status not in ok:
        raise error_of(response)
    return _decode(response)


@dataclass
class InvokeResponse:
    """A synchronous invocation's answer, whether the function succeeded or failed.

    ``payload`` is the function's JSON (its error's ``{"errorMessage", ...}`` when
    ``function_error`` is set), ``log_tail`` the last 4 KB of the call's log when it was
    asked for (``tail=True``).
    """

    status: int
    payload: Any
    request_id: Optional[str]
    function_error: Optional[str]
    log_tail: Optional[str]
    executed_version: Optional[str]

    def raise_for_error(self) -> Any:
        """The payload, or :class:`LambdaFunctionError` when the function failed."""
        if self.function_error:
            raise LambdaFunctionError.from_payload(
                self.payload, request_id=self.request_id, function_error=self.function_error
            )
        return self.payload


class Invocation:
    """An asynchronous invocation (``X-Amz-Invocation-Type: Event``), queued on the worker
    that took it; its record is read from that worker's ``GET /invocations/<id>``."""

    def __init__(self, client: "Client", invocation_id: str, location: Optional[str] = None):
        self.client = client
        self.id = invocation_id
        self.location = location or f"/invocations/{quote(invocation_id, safe='')}"

    def __repr__(self) -> str:
        return f"<Invocation {self.id}>"

    def record(self) -> Dict[str, Any]:
        """The record: ``status`` (``queued``, ``running``, ``succeeded``, ``failed``),
        ``attempts``, ``result``, ``error``, ``condition``, times."""
        return _json(self.client._transport.request("GET", self.location))

    def done(self) -> bool:
        """True once the invocation succeeded or failed for good."""
        return self.record()["status"] in ("succeeded", "failed")

    def result(self, timeout: Optional[float] = None, poll_interval: float = 0.1) -> Any:
        """Waits for the invocation to finish and returns the function's answer.

        Polls the record, ``poll_interval`` apart at first and up to 1 s apart later.
        A failed invocation (after the function's asynchronous retries: by default two,
        a minute and two minutes later) raises :class:`LambdaFunctionError` with the last
        error's type as ``reason``; ``timeout`` seconds without an end raise
        :class:`TimeoutError`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = poll_interval
        while True:
            rec = self.record()
            if rec["status"] == "succeeded":
                if rec.get("result_truncated"):
                    raise LambdaError(
                        f"invocation {self.id} succeeded, but its result "
                        f"({rec['result'].get('bytes')} bytes) was too large to keep"
                    )
                return rec.get("result")
            if rec["status"] == "failed":
                error = rec.get("error") or {}
                reason = error.get("type") or rec.get("condition") or "Failed"
                message = error.get("message") or ""
                if rec.get("condition"):
                    message = f"{message} (condition: {rec['condition']})".strip()
                raise LambdaFunctionError(None, reason, message, request_id=rec.get("request_id"))
            if deadline is not None and time.monotonic() + interval > deadline:
                raise TimeoutError(f"invocation {self.id} is still {rec['status']} after {timeout} s")
            time.sleep(interval)
            interval = min(1.0, interval * 2)


# LambdaPool's own names for the client's options (seed: LambdaPool(..., aws_access_key_id=...)).
SEED_OPTION_NAMES = {
    "aws_access_key_id": "access_key",
    "aws_secret_access_key": "secret_key",
    "aws_region_name": "region",
}


def client_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """The options of a pool's or executor's Client, with LambdaPool's names
    (``aws_access_key_id``, ``aws_secret_access_key``, ``aws_region_name``) taken as
    ``access_key``, ``secret_key`` and ``region``; both names of one option is a TypeError."""
    out = dict(options)
    for seed, ours in SEED_OPTION_NAMES.items():
        if seed in out:
            if ours in out:
                raise TypeError(f"give {seed} or {ours}, not both")
            out[ours] = out.pop(seed)
    return out


class Client:
    """A client of one worker (or registry server, for the management operations).

    Arguments left out come from the environment:

    - ``endpoint``: ``LAMBDAWORKER_ENDPOINT``, else ``http://localhost:8080``;
    - ``access_key`` / ``secret_key``: ``LAMBDAWORKER_ACCESS_KEY`` /
      ``LAMBDAWORKER_SECRET_KEY``, else ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``.
      With keys every request is signed (SigV4, needs the ``sigv4`` extra: botocore); pass
      ``access_key=""`` to send unsigned requests whatever the environment holds;
    - ``region`` (only in the signature's scope; any is accepted): ``LAMBDAWORKER_REGION``,
      ``AWS_REGION``, ``AWS_DEFAULT_REGION``, else ``us-east-1``;
    - ``log_dir`` (for :meth:`logs`): ``LAMBDAWORKER_LOG_DIR``.

    ``timeout`` is seconds, or ``(connect, read)``; ``retry`` how 429 and 503 are retried;
    ``pool_size`` the connections kept open (one per thread that calls at once).
    A client is safe to share between threads.
    """

    def __init__(
        self,
        endpoint: Optional[str] = None,
        access_key: Optional[str] = None,
        secret_key: Optional[str] = None,
        *,
        region: Optional[str] = None,
        timeout: TimeoutSpec = DEFAULT_TIMEOUT,
        retry: Optional[RetryPolicy] = None,
        pool_size: int = 10,
        log_dir: Optional[str] = None,
    ):
        endpoint = endpoint or _env("LAMBDAWORKER_ENDPOINT") or DEFAULT_ENDPOINT
        if access_key is None and secret_key is None:
            if _env("LAMBDAWORKER_ACCESS_KEY", "LAMBDAWORKER_SECRET_KEY"):
                access_key = _env("LAMBDAWORKER_ACCESS_KEY")
                secret_key = _env("LAMBDAWORKER_SECRET_KEY")
            else:
                access_key = _env("AWS_ACCESS_KEY_ID")
                secret_key = _env("AWS_SECRET_ACCESS_KEY")
        signer = None
        if access_key:
            if not secret_key:
                raise LambdaError("an access key was given without its secret key")
            region = region or _env("LAMBDAWORKER_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")
            signer = SigV4Signer(access_key, secret_key, region or "us-east-1")
        self.signed = signer is not None
        self.log_dir = log_dir or _env("LAMBDAWORKER_LOG_DIR")
        self._transport = Transport(
            endpoint,
            timeout=timeout,
            retry=retry or RetryPolicy(),
            pool_size=pool_size,
            signer=signer,
        )

    @property
    def endpoint(self) -> str:
        return self._transport.endpoint

    def __repr__(self) -> str:
        return f"<Client {self.endpoint}{' signed' if self.signed else ''}>"

    def close(self) -> None:
        """Closes the pooled connections (a later request opens new ones)."""
        self._transport.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # The Invoke API.

    def invoke_response(self, name: str, event: Any = None, *, tail: bool = False) -> InvokeResponse:
        """Calls function ``name`` with ``event`` (JSON; ``None`` is ``{}``) and returns its
        answer, a function error included. Errors of the request or the platform (404, 413,
        429 after the retries, 5xx, no connection) raise :class:`LambdaFunctionError`."""
        headers = {"X-Amz-Invocation-Type": "RequestResponse"}
        if tail:
            headers["X-Amz-Log-Type"] = "Tail"
        body = json.dumps({} if event is None else event).encode()
        response = self._transport.request(
            "POST", _function_path(name, "invocations"), body=body, headers=headers
        )
        if response.status != 200:
            raise error_of(response)
        log = response.header("X-Amz-Log-Result")
        return InvokeResponse(
            status=response.status,
            payload=_decode(response),
            request_id=response.header("x-amzn-RequestId"),
            function_error=response.header("X-Amz-Function-Error"),
            log_tail=base64.b64decode(log).decode("utf-8", "replace") if log else None,
            executed_version=response.header("X-Amz-Executed-Version"),
        )

    def invoke(self, name: str, event: Any = None) -> Any:
        """Calls function ``name`` with ``event`` and returns its answer (JSON, decoded).
        A function error (the handler raised, ``Sandbox.Timedout``,
        ``Runtime.OutOfMemory``, ...) raises :class:`LambdaFunctionError`, as do errors of
        the request or the platform."""
        return self.invoke_response(name, event).raise_for_error()

    def invoke_async(self, name: str, event: Any = None) -> Invocation:
        """Queues an asynchronous invocation (``Event``): returns once the worker has stored
        it durably, with a handle whose :meth:`Invocation.result` waits for its answer."""
        body = json.dumps({} if event is None else event).encode()
        response = self._transport.request(
            "POST",
            _function_path(name, "invocations"),
            body=body,
            headers={"X-Amz-Invocation-Type": "Event"},
        )
        if response.status != 202:
            raise error_of(response)
        location = response.header("Location")
        if not location:
            raise LambdaError("the worker queued the invocation but named no Location")
        return Invocation(self, location.rsplit("/", 1)[-1], location)

    def invocation(self, invocation_id: str) -> Invocation:
        """The handle of an asynchronous invocation this endpoint's worker took."""
        return Invocation(self, invocation_id)

    # The management API.

    def functions(self) -> List[Dict[str, Any]]:
        """Every function's configuration (ListFunctions, all pages)."""
        found: List[Dict[str, Any]] = []
        marker: Optional[str] = None
        while True:
            query = {"MaxItems": "1000", **({"Marker": marker} if marker else {})}
            page = _json(self._transport.request("GET", _API + "/", query=query))
            found.extend(page.get("Functions") or [])
            marker = page.get("NextMarker")
            if not marker:
                return found

    def get_function(self, name: str) -> Dict[str, Any]:
        """GetFunction: ``{"Configuration", "Code", "Tags"}``."""
        return _json(self._transport.request("GET", _function_path(name)))

    def create_function(self, name: str, zip_file: bytes, **members: Any) -> Dict[str, Any]:
        """CreateFunction with the code archive ``zip_file`` and AWS's members as keyword
        arguments (``Handler``, ``MemorySize``, ``Timeout``, ``Layers``, ``Tags``,
        ``Environment``, and the platform's ``Lambdaworker``); returns the configuration."""
        body = {"FunctionName": name, "Code": {"ZipFile": _b64(zip_file)}, **members}
        return self._send("POST", _API, body, ok=(201,))

    def update_function_code(self, name: str, zip_file: bytes) -> Dict[str, Any]:
        """UpdateFunctionCode: replaces the code, keeps the settings."""
        return self._send("PUT", _function_path(name, "code"), {"ZipFile": _b64(zip_file)})

    def update_function_configuration(self, name: str, **members: Any) -> Dict[str, Any]:
        """UpdateFunctionConfiguration: the given members replace the function's."""
        return self._send("PUT", _function_path(name, "configuration"), members)

    def delete_function(self, name: str) -> None:
        """DeleteFunction."""
        response = self._transport.request("DELETE", _function_path(name))
        if response.status != 204:
            raise error_of(response)

    def tags(self, name: str) -> Dict[str, str]:
        """The function's tags."""
        return self.get_function(name).get("Tags") or {}

    def _send(self, method: str, path: str, body: Mapping[str, Any], *, ok=(200,)) -> Any:
        data = json.dumps(body).encode()
        return _json(self._transport.request(method, path, body=data), ok=ok)

    # Logs.

    def logs(self, name: str, *, request_id: Optional[str] = None) -> List[_logs.LogLine]:
        """The function's log lines, every worker's merged by time (what ``admin logs``
        prints), read from the cluster's function log directory (``log_dir``).

        The worker serves no log route over HTTP, so this reads the files the workers
        write (``<log_dir>/<name>/<worker>.log*``): it works where that directory can be
        read (the cluster's machine, a shared file system). From elsewhere, a call's own
        log comes with :meth:`invoke_response` (``tail=True``).
        """
        if not self.log_dir:
            raise LambdaError(
                "no log directory: pass log_dir= (or set LAMBDAWORKER_LOG_DIR) to the "
                "cluster's function log directory (<cluster>/logs/functions); the worker "
                "serves no logs over HTTP, a call's own tail comes with "
                "invoke_response(..., tail=True)"
            )
        return _logs.read_function(self.log_dir, name, request_id=request_id)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
