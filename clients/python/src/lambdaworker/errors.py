"""The exceptions of the client.

Every exception the package raises on purpose is a :class:`LambdaError`:

- :class:`LambdaPoolError`: the user's own function, run by a pool function's agent, raised.
  It carries the remote exception's type, message and traceback.
- :class:`LambdaFunctionError`: the platform failed the call or refused the request: a
  timeout, out of memory, a sandbox that died, a throttle that outlasted the retries, an
  HTTP error (4xx, 5xx), or a connection that could not be made. It carries the HTTP status
  and the reason (AWS's ``errorType`` or error code).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence


class LambdaError(Exception):
    """The base of every error of this package."""


class LambdaPoolError(LambdaError):
    """The user's function raised, remotely.

    ``remote_type`` is the exception's type (``ValueError``, ``mymodule.MyError``),
    ``remote_message`` its ``str()``, ``remote_traceback`` the traceback as the sandbox's
    Python formatted it (the agent's own frames left out).
    """

    def __init__(self, remote_type: str, remote_message: str, remote_traceback: str = ""):
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        super().__init__(remote_type, remote_message, remote_traceback)

    def __str__(self) -> str:
        text = f"{self.remote_type}: {self.remote_message}" if self.remote_message else self.remote_type
        if self.remote_traceback:
            text += "\n\nRemote traceback:\n" + self.remote_traceback.rstrip("\n")
        return text


class LambdaFunctionError(LambdaError):
    """The platform failed a call or refused a request.

    - ``status``: the HTTP status (200 for a function error, which AWS answers with
      ``X-Amz-Function-Error``; ``None`` when no answer came, a connection or read failure,
      and for a failed asynchronous invocation, whose record has no status);
    - ``reason``: AWS's ``errorType`` for a function error (``Sandbox.Timedout``,
      ``Runtime.OutOfMemory``, ``Runtime.ExitError``, ``ValueError`` from a plain handler, ...),
      else the error code (``TooManyRequestsException``, ``ResourceNotFoundException``, ...);
    - ``message``: the platform's message;
    - ``request_id``: the call's request id, when the answer had one;
    - ``stack_trace``: the frames of a function error's traceback (AWS's ``stackTrace``);
    - ``function_error``: the ``X-Amz-Function-Error`` header (``Unhandled``) or ``None``.
    """

    def __init__(
        self,
        status: Optional[int],
        reason: str,
        message: str = "",
        *,
        request_id: Optional[str] = None,
        stack_trace: Sequence[str] = (),
        function_error: Optional[str] = None,
    ):
        self.status = status
        self.reason = reason
        self.message = message
        self.request_id = request_id
        self.stack_trace = list(stack_trace)
        self.function_error = function_error
        super().__init__(status, reason, message)

    def __str__(self) -> str:
        text = self.reason if self.status is None else f"{self.reason} (HTTP {self.status})"
        if self.message:
            text += f": {self.message}"
        return text

    @classmethod
    def from_payload(
        cls, payload: Any, *, request_id: Optional[str], function_error: Optional[str]
    ) -> "LambdaFunctionError":
        """The error of a function error's payload (``{"errorMessage", "errorType", ...}``)."""
        if not isinstance(payload, dict):
            payload = {"errorMessage": str(payload)}
        trace = payload.get("stackTrace")
        return cls(
            200,
            str(payload.get("errorType") or "Unhandled"),
            str(payload.get("errorMessage") or ""),
            request_id=payload.get("requestId") or request_id,
            stack_trace=[str(frame) for frame in trace] if isinstance(trace, list) else (),
            function_error=function_error,
        )
