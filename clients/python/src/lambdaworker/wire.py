"""The client's side of a pool call: pickling calls for the agent (:mod:`lambdaworker.agent`),
invoking the pool function, and reading the agent's answer back into outcomes."""

from __future__ import annotations

import base64
import pickle
import platform
from typing import Any, Callable, List, Mapping, Sequence, Tuple

from .agent import KEY, WIRE_VERSION, bytecode_message, dumps, same_bytecode
from .errors import LambdaError, LambdaFunctionError, LambdaPoolError

#: One call: positional and keyword arguments.
Call = Tuple[Sequence[Any], Mapping[str, Any]]
#: What one call gave: ``(True, value)``, or ``(False, exception)`` to raise.
Outcome = Tuple[bool, Any]


def encode(func: Callable, calls: Sequence[Call]) -> dict:
    """The event that runs ``func`` once per call, pickled with this Python's highest
    protocol (and asking for answers in at most that one)."""
    call = (func, [(tuple(a), dict(k)) for a, k in calls])
    data, bytecode = dumps(call, pickle.HIGHEST_PROTOCOL)
    return {
        KEY: {
            "version": WIRE_VERSION,
            "protocol": pickle.HIGHEST_PROTOCOL,
            "python": platform.python_version(),
            "bytecode": bytecode,
            "call": base64.b64encode(data).decode("ascii"),
        }
    }


def _pool_error(error: Any) -> LambdaPoolError:
    if not isinstance(error, dict):
        error = {"type": "Error", "message": str(error)}
    return LambdaPoolError(
        str(error.get("type") or "Error"),
        str(error.get("message") or ""),
        str(error.get("traceback") or ""),
    )


def decode(function: str, payload: Any, count: int) -> List[Outcome]:
    """The outcomes of ``count`` calls from the agent's answer ``payload``."""
    answer = payload.get(KEY) if isinstance(payload, dict) else None
    if not isinstance(answer, dict):
        raise LambdaError(
            f"function {function!r} did not answer as a pool function: was it made by `lambdaworker create`?"
        )
    if answer.get("error") is not None:
        error = _pool_error(answer["error"])
        return [(False, error)] * count
    results = answer.get("results")
    if not isinstance(results, list) or len(results) != count:
        raise LambdaError(f"function {function!r} answered {count} calls with a malformed answer")
    remote = str(answer.get("python", "?"))
    outcomes: List[Outcome] = []
    for result in results:
        if isinstance(result, dict) and "value" in result:
            if result.get("bytecode") and not same_bytecode(remote, platform.python_version()):
                message = bytecode_message(platform.python_version(), remote)
                outcomes.append(
                    (False, LambdaError(f"a result of {function!r} was not unpickled: {message}"))
                )
                continue
            try:
                outcomes.append((True, pickle.loads(base64.b64decode(result["value"]))))
            except Exception as exc:
                failure = LambdaError(f"a result of {function!r} could not be unpickled here: {exc!r}")
                failure.__cause__ = exc
                outcomes.append((False, failure))
        else:
            error = result.get("error") if isinstance(result, dict) else result
            outcomes.append((False, _pool_error(error)))
    return outcomes


def call(client: Any, function: str, func: Callable, calls: Sequence[Call]) -> List[Outcome]:
    """Runs ``func`` once per call in one invocation of pool function ``function``.

    Raises :class:`LambdaFunctionError` when the platform failed the invocation (a
    timeout, out of memory, the sandbox died, throttled after the retries, 5xx): that is
    every call's failure.
    """
    response = client.invoke_response(function, encode(func, calls))
    if response.function_error:
        raise LambdaFunctionError.from_payload(
            response.payload, request_id=response.request_id, function_error=response.function_error
        )
    return decode(function, response.payload, len(calls))
