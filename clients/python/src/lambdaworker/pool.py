"""LambdaPool: :class:`multiprocessing.pool.Pool`'s interface, each task a call of a pool
function (one made by ``lambdaworker create``).

``workers`` threads of this process each run one invocation at a time, so at most
``workers`` calls run at once. A task's function is pickled with cloudpickle: a function
imported from a module goes by reference and must be importable in the pool function too.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence

from . import wire
from .client import Client, client_options
from .errors import LambdaError

_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"

#: The default number of calls running at once.
DEFAULT_WORKERS = 8


def _terminated() -> LambdaError:
    return LambdaError("the pool was terminated before this task ran")


def _outcomes(future: Future, count: int) -> List[wire.Outcome]:
    """The outcomes of a chunk's future: its calls', or its failure for each call."""
    if future.cancelled():
        return [(False, _terminated())] * count
    error = future.exception()
    if error is not None:
        return [(False, error)] * count
    return future.result()


class AsyncResult:
    """The result of :meth:`LambdaPool.apply_async`, as :mod:`multiprocessing` spells it."""

    def __init__(self, callback: Optional[Callable] = None, error_callback: Optional[Callable] = None):
        self._event = threading.Event()
        self._success: Optional[bool] = None
        self._value: Any = None
        self._callback = callback
        self._error_callback = error_callback

    def ready(self) -> bool:
        """True once the task has finished."""
        return self._event.is_set()

    def successful(self) -> bool:
        """True when the task finished without raising; ``ValueError`` before it finished."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return bool(self._success)

    def wait(self, timeout: Optional[float] = None) -> None:
        """Waits until the task has finished, at most ``timeout`` seconds."""
        self._event.wait(timeout)

    def get(self, timeout: Optional[float] = None) -> Any:
        """The task's value; raises its error (:class:`~lambdaworker.LambdaPoolError`,
        :class:`~lambdaworker.LambdaFunctionError`), or :class:`multiprocessing.TimeoutError`
        when it has not finished within ``timeout`` seconds."""
        self.wait(timeout)
        if not self.ready():
            raise multiprocessing.TimeoutError
        if self._success:
            return self._value
        raise self._value

    def _set(self, success: bool, value: Any) -> None:
        self._success, self._value = success, value
        try:
            if success and self._callback is not None:
                self._callback(value)
            if not success and self._error_callback is not None:
                self._error_callback(value)
        finally:
            self._event.set()


#: multiprocessing's name for the same thing.
ApplyResult = AsyncResult


class MapResult(AsyncResult):
    """The result of :meth:`LambdaPool.map_async`: a list in the order of the input. It is
    ready as soon as one task fails (that error is raised), or once every task succeeded."""

    def __init__(self, length: int, chunks: int, callback=None, error_callback=None):
        super().__init__(callback, error_callback)
        self._lock = threading.Lock()
        self._values: List[Any] = [None] * length
        self._remaining = chunks
        if chunks == 0:
            self._set(True, [])

    def _chunk_done(self, start: int, outcomes: List[wire.Outcome]) -> None:
        with self._lock:
            if self._remaining <= 0:
                return
            failure = next((value for ok, value in outcomes if not ok), None)
            if failure is not None:
                self._remaining = 0
            else:
                self._values[start : start + len(outcomes)] = [value for _, value in outcomes]
                self._remaining -= 1
            finished = self._remaining == 0
        if failure is not None:
            self._set(False, failure)
        elif finished:
            self._set(True, self._values)


class IMapIterator:
    """The iterator of :meth:`LambdaPool.imap` (in order) and
    :meth:`LambdaPool.imap_unordered` (as they finish). ``next(timeout)`` raises
    :class:`multiprocessing.TimeoutError` when no result came within ``timeout`` seconds; a
    task's error is raised at its place, and iterating may go on after it."""

    def __init__(self, ordered: bool):
        self._ordered = ordered
        self._cond = threading.Condition()
        self._by_index: Dict[int, wire.Outcome] = {}
        self._finished: collections.deque = collections.deque()
        self._yielded = 0
        self._length: Optional[int] = None

    def __iter__(self) -> "IMapIterator":
        return self

    def next(self, timeout: Optional[float] = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._ordered and self._yielded in self._by_index:
                    ok, value = self._by_index.pop(self._yielded)
                    break
                if not self._ordered and self._finished:
                    ok, value = self._finished.popleft()
                    break
                if self._length is not None and self._yielded >= self._length:
                    raise StopIteration
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise multiprocessing.TimeoutError
                self._cond.wait(left)
            self._yielded += 1
        if ok:
            return value
        raise value

    __next__ = next

    def _put(self, start: int, outcomes: Sequence[wire.Outcome]) -> None:
        with self._cond:
            for i, outcome in enumerate(outcomes):
                if self._ordered:
                    self._by_index[start + i] = outcome
                else:
                    self._finished.append(outcome)
            self._cond.notify_all()

    def _finish(self, length: int) -> None:
        with self._cond:
            self._length = length
            self._cond.notify_all()


def _chunks(iterable: Iterable, size: int) -> Iterator[list]:
    it = iter(iterable)
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


class LambdaPool:
    """A pool of ``workers`` concurrent calls of pool function ``lambda_function``.

    ``client`` is the :class:`~lambdaworker.Client` to call through; without one, a client
    is made from the other keyword options (``endpoint``, ``access_key``, ``secret_key``,
    ``region``, ``timeout``, ``retry``; LambdaPool's ``aws_access_key_id``,
    ``aws_secret_access_key`` and ``aws_region_name`` are taken for the three), with a
    connection per worker.

    ``chunksize`` (``map``, ``imap``, ``starmap``, ...) is how many tasks one invocation
    runs; the default, 1, is an invocation per task, so tasks spread over sandboxes. Larger
    chunks pay the invocation's cost once for many small tasks.
    """

    def __init__(
        self,
        workers: int = DEFAULT_WORKERS,
        lambda_function: Optional[str] = None,
        *,
        client: Optional[Client] = None,
        **options: Any,
    ):
        if not lambda_function:
            raise ValueError("lambda_function: the name of a pool function is required")
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._workers = workers
        self._function = lambda_function
        self._own_client = client is None
        self._client = client if client is not None else Client(pool_size=workers, **client_options(options))
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="LambdaPool")
        self._lock = threading.Lock()
        self._state = _RUN
        self._feeders: set = set()
        # A feeder (imap) keeps at most this many chunks queued or running.
        self._window = 2 * workers

    def __repr__(self) -> str:
        return f"<LambdaPool state={self._state} workers={self._workers} lambda_function={self._function!r}>"

    def __enter__(self) -> "LambdaPool":
        self._check_running()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()

    def _check_running(self) -> None:
        if self._state != _RUN:
            raise ValueError("Pool not running")

    def _submit(
        self, func: Callable, calls: List[wire.Call], on_done: Callable[[List[wire.Outcome]], None]
    ) -> None:
        with self._lock:
            future = None
            if self._state != _TERMINATE:
                future = self._executor.submit(wire.call, self._client, self._function, func, calls)
        if future is None:
            on_done([(False, _terminated())] * len(calls))
        else:
            future.add_done_callback(lambda f: on_done(_outcomes(f, len(calls))))

    # One task.

    def apply(self, func: Callable, args: Sequence = (), kwds: Optional[dict] = None) -> Any:
        """Runs ``func(*args, **kwds)`` remotely and returns its value."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Callable,
        args: Sequence = (),
        kwds: Optional[dict] = None,
        callback: Optional[Callable] = None,
        error_callback: Optional[Callable] = None,
    ) -> AsyncResult:
        """Starts ``func(*args, **kwds)`` remotely; returns its :class:`AsyncResult`."""
        self._check_running()
        result = AsyncResult(callback, error_callback)
        self._submit(func, [(tuple(args), dict(kwds or {}))], lambda outcomes: result._set(*outcomes[0]))
        return result

    # Many tasks, all at once.

    def _map_async(self, func, calls, chunksize, callback, error_callback) -> MapResult:
        self._check_running()
        chunksize = 1 if chunksize is None else chunksize
        if chunksize < 1:
            raise ValueError("chunksize must be at least 1")
        starts = range(0, len(calls), chunksize)
        result = MapResult(len(calls), len(starts), callback, error_callback)
        for start in starts:
            chunk = calls[start : start + chunksize]
            self._submit(func, chunk, lambda outcomes, s=start: result._chunk_done(s, outcomes))
        return result

    def map(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None) -> list:
        """``[func(x) for x in iterable]``, computed remotely, in order. The first error raises."""
        return self.map_async(func, iterable, chunksize).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None) -> MapResult:
        """Starts :meth:`map`; returns its :class:`MapResult`."""
        calls = [((x,), {}) for x in iterable]
        return self._map_async(func, calls, chunksize, callback, error_callback)

    def starmap(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None) -> list:
        """``[func(*args) for args in iterable]``, computed remotely, in order."""
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None) -> MapResult:
        """Starts :meth:`starmap`; returns its :class:`MapResult`."""
        calls = [(tuple(args), {}) for args in iterable]
        return self._map_async(func, calls, chunksize, callback, error_callback)

    # Many tasks, as a stream.

    def imap(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> IMapIterator:
        """Iterates over ``func(x)`` for each ``x`` of ``iterable``, in order, as results come.
        The iterable is read by a thread of the pool as tasks are started, at most
        ``2 * workers`` chunks ahead of those finished."""
        return self._imap(func, iterable, chunksize, ordered=True)

    def imap_unordered(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> IMapIterator:
        """As :meth:`imap`, in the order the results come."""
        return self._imap(func, iterable, chunksize, ordered=False)

    def _imap(self, func, iterable, chunksize, ordered) -> IMapIterator:
        self._check_running()
        if chunksize < 1:
            raise ValueError("chunksize must be at least 1")
        it = IMapIterator(ordered)
        feeder = threading.Thread(
            target=self._feed, args=(it, func, iterable, chunksize), name="LambdaPool-feeder", daemon=True
        )
        with self._lock:
            self._feeders.add(feeder)
        feeder.start()
        return it

    def _feed(self, it: IMapIterator, func: Callable, iterable: Iterable, chunksize: int) -> None:
        window = threading.Semaphore(self._window)

        def done(start: int, outcomes: List[wire.Outcome]) -> None:
            window.release()
            it._put(start, outcomes)

        index = 0
        try:
            for chunk in _chunks(iterable, chunksize):
                window.acquire()
                if self._state == _TERMINATE:
                    break
                self._submit(func, [((x,), {}) for x in chunk], lambda o, s=index: done(s, o))
                index += len(chunk)
        except Exception as exc:
            # The iterable raised: as in multiprocessing, that is the next item's error.
            it._put(index, [(False, exc)])
            index += 1
        finally:
            it._finish(index)
            with self._lock:
                self._feeders.discard(threading.current_thread())

    # The pool's life.

    def close(self) -> None:
        """Takes no more tasks; those started still run. Then :meth:`join` waits for them."""
        with self._lock:
            if self._state == _RUN:
                self._state = _CLOSE

    def terminate(self) -> None:
        """Takes no more tasks and drops those not started (their results raise
        :class:`~lambdaworker.LambdaError`). Invocations already sent still run to their end
        on the worker, as a sent request cannot be taken back; :meth:`join` waits for them."""
        with self._lock:
            self._state = _TERMINATE
        # Outside the lock: cancelling runs the dropped tasks' callbacks, the user's included.
        self._executor.shutdown(wait=False, cancel_futures=True)

    def join(self) -> None:
        """Waits for every task to finish; after :meth:`close` or :meth:`terminate`."""
        if self._state == _RUN:
            raise ValueError("Pool is still running")
        with self._lock:
            feeders = list(self._feeders)
        for feeder in feeders:
            feeder.join()
        self._executor.shutdown(wait=True)
        if self._own_client:
            self._client.close()
