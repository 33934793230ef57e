"""A Python client of lambdaworker: :class:`Client` for the Invoke and management APIs,
:class:`LambdaPool` and :class:`LambdaExecutor` to run Python callables in a pool function,
and the ``lambdaworker`` command that deploys such functions."""

__version__ = "0.1.0"

from ._transport import RetryPolicy
from .client import Client, Invocation, InvokeResponse
from .errors import LambdaError, LambdaFunctionError, LambdaPoolError
from .executor import LambdaExecutor
from .logs import LogLine
from .pool import AsyncResult, LambdaPool

__all__ = [
    "AsyncResult",
    "Client",
    "Invocation",
    "InvokeResponse",
    "LambdaError",
    "LambdaExecutor",
    "LambdaFunctionError",
    "LambdaPool",
    "LambdaPoolError",
    "LogLine",
    "RetryPolicy",
]
