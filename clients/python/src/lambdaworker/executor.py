"""LambdaExecutor: a :class:`concurrent.futures.Executor` whose calls run in a pool function."""

from __future__ import annotations

from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Callable, Optional

from . import wire
from .client import Client, client_options
from .pool import DEFAULT_WORKERS


class LambdaExecutor(Executor):
    """Runs ``fn(*args, **kwargs)`` in pool function ``lambda_function``, at most
    ``max_workers`` at once.

    :meth:`submit` returns a real :class:`concurrent.futures.Future`, so
    :func:`concurrent.futures.as_completed` and :func:`concurrent.futures.wait` work with it;
    :meth:`map` is :meth:`concurrent.futures.Executor.map`. ``client`` and
    the other keyword options are as for :class:`~lambdaworker.LambdaPool`.
    """

    def __init__(
        self,
        lambda_function: str,
        max_workers: int = DEFAULT_WORKERS,
        *,
        client: Optional[Client] = None,
        **options: Any,
    ):
        if not lambda_function:
            raise ValueError("lambda_function: the name of a pool function is required")
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._function = lambda_function
        self._own_client = client is None
        self._client = (
            client if client is not None else Client(pool_size=max_workers, **client_options(options))
        )
        self._threads = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="LambdaExecutor")

    def __repr__(self) -> str:
        return f"<LambdaExecutor lambda_function={self._function!r}>"

    def _run(self, fn: Callable, args: tuple, kwargs: dict) -> Any:
        ((ok, value),) = wire.call(self._client, self._function, fn, [(args, kwargs)])
        if ok:
            return value
        raise value

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        """Schedules ``fn(*args, **kwargs)``; its future's exception is the remote error
        (:class:`~lambdaworker.LambdaPoolError`, :class:`~lambdaworker.LambdaFunctionError`)."""
        return self._threads.submit(self._run, fn, args, kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As :meth:`concurrent.futures.Executor.shutdown`."""
        self._threads.shutdown(wait=wait, cancel_futures=cancel_futures)
        if wait and self._own_client:
            self._client.close()
