"""HTTP for the client: one urllib3 connection pool per endpoint, timeouts, retries of
throttled and unavailable answers with backoff honouring ``Retry-After``, and SigV4 signing.

urllib3's :class:`~urllib3.PoolManager` keeps connections alive and is safe to share between
threads, so a pool of N threads reuses up to N connections. Its own retries are off: the loop
here retries, signing each attempt afresh (a signature carries its time).
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Tuple, Union
from urllib.parse import urlencode, urlsplit

import urllib3

from .errors import LambdaError, LambdaFunctionError

#: A timeout: seconds for both connecting and reading, or ``(connect, read)``.
TimeoutSpec = Union[float, Tuple[float, float]]

#: Statuses retried: throttled (429) and unavailable (503). Neither ran the call.
RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """How throttled (429), unavailable (503) and unconnectable requests are retried.

    Attempt ``n`` (from 0) that fails waits at least the answer's ``Retry-After`` and at
    least a random delay in ``[0, min(max_backoff, backoff * 2**n)]`` (exponential backoff
    with full jitter, so that many throttled threads do not come back at one instant), then
    tries again, up to ``max_retries`` retries.
    """

    max_retries: int = 8
    backoff: float = 0.1
    max_backoff: float = 20.0

    def delay(self, attempt: int, retry_after: Optional[float]) -> float:
        jittered = random.uniform(0, min(self.max_backoff, self.backoff * (2**attempt)))
        return max(jittered, retry_after or 0.0)


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date.
    ``None`` when there is none or it cannot be read."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class SigV4Signer:
    """Signs requests with AWS Signature Version 4 for the service ``lambda``, through
    botocore's :class:`~botocore.auth.SigV4Auth` (the implementation boto3 uses)."""

    def __init__(self, access_key: str, secret_key: str, region: str):
        try:
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest
            from botocore.credentials import Credentials
        except ImportError as exc:
            raise LambdaError(
                "signing requests (an access key was given) needs botocore: pip install 'lambdaworker[sigv4]'"
            ) from exc
        self._request = AWSRequest
        self._auth = SigV4Auth(Credentials(access_key, secret_key), "lambda", region)

    def sign(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> dict:
        """The headers to send: ``headers`` with ``X-Amz-Date`` and ``Authorization``."""
        request = self._request(method=method, url=url, data=body, headers=dict(headers))
        self._auth.add_auth(request)
        return dict(request.headers.items())


@dataclass
class Response:
    """An HTTP answer, read whole."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name)


class Transport:
    """Sends requests to one endpoint (``http://host:port``)."""

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: TimeoutSpec,
        retry: RetryPolicy,
        pool_size: int,
        signer: Optional[SigV4Signer] = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LambdaError(f"endpoint {endpoint!r} is not an http:// or https:// URL")
        self.endpoint = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self._host = parts.netloc
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self._timeout = urllib3.Timeout(connect=connect, read=read)
        self._retry = retry
        self._signer = signer
        self._sleep = sleep
        self._http = urllib3.PoolManager(num_pools=4, maxsize=max(1, pool_size), retries=False)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, str]] = None,
        body: bytes = b"",
        headers: Optional[Mapping[str, str]] = None,
    ) -> Response:
        """Sends a request, retrying 429, 503 and failures to connect; returns the last
        answer (a 429 or 503 once the retries are spent). A connection that fails for good,
        or an answer that does not arrive within the read timeout, is a
        :class:`LambdaFunctionError` with ``status`` ``None``."""
        url = self.endpoint + path
        if query:
            url += "?" + urlencode(sorted(query.items()))
        base = {"Host": self._host, **(headers or {})}
        if body:
            base.setdefault("Content-Type", "application/json")
        attempt = 0
        while True:
            sent = self._signer.sign(method, url, base, body) if self._signer else dict(base)
            try:
                raw = self._http.request(method, url, body=body or None, headers=sent, timeout=self._timeout)
            except urllib3.exceptions.ConnectTimeoutError as exc:
                # NewConnectionError (refused, unreachable) is a ConnectTimeoutError too:
                # nothing was sent, so even a call is safe to send again.
                if attempt < self._retry.max_retries:
                    self._sleep(self._retry.delay(attempt, None))
                    attempt += 1
                    continue
                raise LambdaFunctionError(None, "ConnectionError", f"{url}: {exc}") from exc
            except urllib3.exceptions.ReadTimeoutError as exc:
                raise LambdaFunctionError(
                    None, "ReadTimeout", f"{url}: no answer within {self._timeout.read_timeout} s"
                ) from exc
            except urllib3.exceptions.HTTPError as exc:
                raise LambdaFunctionError(None, "ConnectionError", f"{url}: {exc}") from exc
            response = Response(raw.status, raw.headers, raw.data)
            if response.status not in RETRY_STATUSES or attempt >= self._retry.max_retries:
                return response
            self._sleep(self._retry.delay(attempt, parse_retry_after(response.header("Retry-After"))))
            attempt += 1

    def close(self) -> None:
        """Closes the pooled connections."""
        self._http.clear()
