"""lambdaworker's in-sandbox runtime: serves one function's calls over /host/server_pipe.

The worker creates the listening unix socket (bound at <scratch>/server_pipe, seen here as
/host/server_pipe) and passes it as fd 3, so it can connect before this interpreter is up.

The entry is loaded once, before the first call (load_entry): what _HANDLER names, written
module.attr (default lambda_func.handler; the module may be dotted, pkg.app.handler) or, gunicorn
style, module:attr (app:app, pkg.app:app; after the colon a dotted path of attributes), imported
from this sys.path, in order:
  /handler (the function's code), each layer (LAMBDA_LAYERS, in the function's order), each
  PYTHONPATH entry, the interpreter's standard library, the function's packages
  (LAMBDA_PACKAGES), the system's package directories, and last COMPAT_DIR (luna_lambda_tools,
  for code written for Luna; a function's own copy comes first).
The function is called with (event) when it takes one positional argument, and with (event,
context) when it takes two or *args (context: runtime_extras.LambdaContext, as AWS's Python
runtime gives it).
What it returns is awaited when it is awaitable (an async def), on one event loop kept for the
sandbox's life. Luna's entry, lambda_main.main, gets a luna_lambda_tools
StandaloneLambdaRequest whose .json is the event in place of the event itself.

LAMBDA_ENTRY_TYPE says what the entry is: handler (or unset: a function called as above), wsgi
(a PEP 3333 app) or asgi (an ASGI 3 app). An HTTP app is mounted at /run/<LAMBDA_NAME>: each
call's event is an API Gateway HTTP event (payload format 2.0 or 1.0), and what the call returns
is API Gateway's response shape for it; ASGI lifespan startup runs once, at load. runtime_http.py
(imported for those entries alone) says how.

The call protocol, version CALL_PROTOCOL (the worker's side is worker/src/runtime_client; the
worker reads the CALL_PROTOCOL line below before it starts), on one connection, any number of
calls in turn:
  request:  4-byte big-endian length N, then N bytes:
              1 byte   CALL_PROTOCOL
              8 bytes  the call's deadline, big-endian: CLOCK_MONOTONIC in nanoseconds (the
                       sandbox has no time namespace: its clock is the worker's)
              1 byte   the length L of the request id, then its L bytes (ASCII)
              the rest (N - 10 - L bytes): the event, JSON
  response: 1 byte kind, 4-byte big-endian length N, then N bytes of JSON
            kind 0: the entry's return value
            kind 1: the entry (or its module) raised, or cannot be loaded or called:
                    {"type", "message", "traceback"}
            kind 2: the request itself was unusable: {"type", "message"}
  init report: once per sandbox, right before its first response, a frame of kind 3 whose
            N = 8 bytes are how long load_entry took, in nanoseconds, big-endian (the worker
            adds it to its own start of the sandbox for the REPORT line's Init Duration)
  probe:    a request of N = 0 bytes (no header, no event) is answered with the init report
            alone, sent whether or not it was sent before: the entry is loaded and its module's
            init has run (provisioned concurrency waits for it), and no call counts it
The runtime never dies on a bad request; only the worker ends it. It flushes stdout and stderr
before it sends a response, so everything a call printed is in the worker's pipe by then.

Start-up time is most of a cold call, so this file imports only what it needs before the first
request: `_socket` rather than `socket` (which pulls in `enum`), the C parts of `json` through
`_json` rather than `json` (whose pure-Python half compiles regular expressions), `traceback`
only when an exception is reported, runtime_extras.py (everything but a plain handler(event) in
lambda_func.py: other entries, the context, asyncio, inspect) only when the entry needs it, and
runtime_http.py only for wsgi and asgi entries, since the interpreter compiles these files from
source at every fresh start. It runs with -S (no `site`).
"""

import sys

import _socket

HANDLER_DIR = "/handler"
# Modules that code written for other platforms imports (luna_lambda_tools).
COMPAT_DIR = "/usr/local/lib/lambdaworker/compat"
LISTEN_FD = 3
# The version of the call protocol this file speaks (the worker reads this line; keep it one line).
CALL_PROTOCOL = 4
DEFAULT_ENTRY = "lambda_func.handler"
OK, HANDLER_ERROR, REQUEST_ERROR, INIT_REPORT = 0, 1, 2, 3
# A request's fixed header: the protocol byte, the deadline, the request id's length.
HEADER = 10
# Without `site`, add the system's package directories so apt-installed modules still import.
SYSTEM_PATHS = ("/usr/local/lib/python3/dist-packages", "/usr/lib/python3/dist-packages")
CO_VARARGS = 0x04  # in a code object's co_flags: it takes *args


def _plain_json():
    import json

    return lambda data: json.loads(str(data, "utf-8")), lambda obj: json.dumps(obj, allow_nan=False)


def _fast_json():
    """json.loads and json.dumps(allow_nan=False) from CPython's C accelerator, as json uses it."""
    import _json

    inf = float("inf")

    class _Decoder:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = {"-Infinity": -inf, "Infinity": inf, "NaN": float("nan")}.__getitem__

    scan = _json.make_scanner(_Decoder())

    def loads(data):
        text = str(data, "utf-8").strip(" \t\n\r")
        try:
            obj, end = scan(text, 0)
        except StopIteration:
            raise ValueError("expecting a JSON value") from None
        except SystemError:  # CPython 3.11's scanner, failing to raise its own error: json says why
            import json

            return json.loads(text)
        if end != len(text):
            raise ValueError("extra data after the JSON value at character %d" % end)
        return obj

    def default(obj):
        raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)

    encode = _json.make_encoder({}, default, _json.encode_basestring_ascii, None, ": ", ", ", False, False, False)

    def dumps(obj):
        return "".join(encode(obj, 0))

    dumps({"probe": [1, 2.5, "x", None, True]})  # fail here, not on the first call
    return loads, dumps


try:
    loads, dumps = _fast_json()
except Exception:  # a Python without the accelerator, or a changed one
    loads, dumps = _plain_json()


def error_info(exc):
    import traceback

    return dumps(
        {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(exc)),
        }
    ).encode()


def flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def line_buffered():
    """stdout and stderr (the worker's pipe) written at each line, so that a follower of the
    function's log sees a running call's lines as they are printed, not at its end."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except Exception:
            pass


def getenv(name, default=""):
    """A variable of the sandbox's environment. A forked sandbox was given its environment
    through os.environ (its zygote imported os); a fresh one reads it without importing os."""
    os = sys.modules.get("os")
    if os is not None:
        return os.environ.get(name, default)
    import posix

    value = posix.environ.get(name.encode())
    return default if value is None else value.decode("utf-8", "surrogateescape")


def env_paths(name):
    """The non-empty entries of a ':'-separated list in the environment."""
    return [p for p in getenv(name).split(":") if p]


def env_packages():
    """The function's package directories (/packages/<name>/<version>, from requirements.txt),
    in the order the worker lists them in LAMBDA_PACKAGES."""
    return env_paths("LAMBDA_PACKAGES")


def package_paths(paths):
    """The sys.path entries for package directories; their .pth files are honoured as `site`
    would (then `site` has already added them and none are returned)."""
    import posix

    if any(name.endswith(".pth") for p in paths for name in posix.listdir(p)):
        import site

        for p in paths:
            site.addsitedir(p)
        return []
    return paths


def own_module(name):
    """One of the runtime's modules (runtime_extras, runtime_http), imported from this file's
    directory alone (never a function's own module of that name: the function's directories
    are on sys.path first)."""
    module = sys.modules.get(name)
    if module is None:
        path = sys.path[:]
        sys.path[:] = [__file__.rpartition("/")[0] or "."]
        try:
            module = __import__(name)
        finally:
            sys.path[:] = path
    return module


def extras():
    return own_module("runtime_extras")


class Entry:
    """What calls run: the entry's function, with the context class, request class and event
    loop of the entries that need them; or the error every call answers with."""

    __slots__ = ("name", "fn", "context_type", "request_type", "function_env", "loop", "error", "load_ns")

    def __init__(self, name):
        self.name = name
        self.fn = self.context_type = self.request_type = self.function_env = None
        self.loop = self.error = None
        self.load_ns = 0


def load_plain(entry):
    """The default entry as a plain handler(event) in lambda_func.py, loaded without
    runtime_extras; False for anything else (then runtime_extras loads the entry, or says what
    is wrong with it)."""
    try:
        import lambda_func
    except ModuleNotFoundError as exc:
        if exc.name == "lambda_func":
            return False
        raise
    fn = getattr(lambda_func, "handler", None)
    code = getattr(fn, "__code__", None)
    plain = code is not None and getattr(fn, "__func__", None) is None
    if not plain or code.co_argcount != 1 or code.co_kwonlyargcount or code.co_flags & CO_VARARGS:
        return False
    entry.fn = fn
    return True


def load_entry(packages):
    """Puts the function's directories on sys.path (in the module docstring's order) and loads
    its entry; an entry that cannot be loaded carries the error every call answers with. How
    long it took goes into the init report."""
    from time import monotonic_ns  # a built-in module: no file to read

    started = monotonic_ns()
    line_buffered()
    entry = Entry(getenv("_HANDLER") or DEFAULT_ENTRY)
    front = [HANDLER_DIR] + env_paths("LAMBDA_LAYERS")
    if getenv("PYTHONPATH"):
        front += extras().pythonpath(getenv("PYTHONPATH"))
    sys.path[:0] = front
    sys.path.extend(package_paths(packages))
    sys.path.extend(SYSTEM_PATHS)
    sys.path.append(COMPAT_DIR)
    kind = getenv("LAMBDA_ENTRY_TYPE").lower() or "handler"
    try:
        if kind != "handler":
            own_module("runtime_http").load(entry, kind, HANDLER_DIR, getenv)
        elif entry.name != DEFAULT_ENTRY or not load_plain(entry):
            extras().load(entry, HANDLER_DIR, getenv)
    except BaseException as exc:  # SystemExit and friends in module code too
        entry.fn = None
        entry.error = error_info(exc)
    finally:
        flush()
    entry.load_ns = monotonic_ns() - started
    return entry


def bad_request(message):
    return REQUEST_ERROR, dumps({"type": "BadRequest", "message": message}).encode()


def call(entry, frame):
    if entry.error is not None:
        return HANDLER_ERROR, entry.error
    if len(frame) < HEADER or frame[0] != CALL_PROTOCOL:
        version = frame[0] if frame else "none"
        return bad_request("call protocol %s, but this runtime speaks %d" % (version, CALL_PROTOCOL))
    start = HEADER + frame[9]
    if len(frame) < start:
        return bad_request("the request id runs past the end of the request")
    try:
        event = loads(memoryview(frame)[start:])
    except (ValueError, UnicodeDecodeError, RecursionError, MemoryError) as exc:
        return bad_request("event is not valid JSON: %s" % exc)
    try:
        arg = event if entry.request_type is None else entry.request_type(event)
        if entry.context_type is None:
            result = entry.fn(arg)
        else:
            deadline = int.from_bytes(frame[1:9], "big")
            result = entry.fn(arg, entry.context_type(entry.function_env, frame[HEADER:start], deadline))
        if hasattr(result, "__await__"):
            result = extras().wait(entry, result)
    except BaseException as exc:  # a handler calling sys.exit() is an error, not an exit
        return HANDLER_ERROR, error_info(exc)
    finally:
        flush()
    try:
        return OK, dumps(result).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        exc.args = ("entry %s returned a value that is not JSON-serializable: %s" % (entry.name, exc),)
        return HANDLER_ERROR, error_info(exc)


def recv_exact(conn, size):
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = conn.recv_into(view[got:])
        if n == 0:
            raise EOFError
        got += n
    return buf


def serve(listener, entry):
    # The init report goes out once, in the same write as the first response.
    report = bytes((INIT_REPORT,)) + (8).to_bytes(4, "big") + max(entry.load_ns, 0).to_bytes(8, "big")
    init = report
    while True:
        fd, _ = listener._accept()
        conn = _socket.socket(fileno=fd)
        try:
            while True:
                size = int.from_bytes(recv_exact(conn, 4), "big")
                if size == 0:  # a probe
                    conn.sendall(report)
                    init = b""
                    continue
                frame = recv_exact(conn, size)
                kind, payload = call(entry, frame)
                conn.sendall(init + bytes((kind,)) + len(payload).to_bytes(4, "big") + payload)
                init = b""
        except (EOFError, OSError):
            pass
        finally:
            conn.close()


def main():
    listener = _socket.socket(fileno=LISTEN_FD)
    serve(listener, load_entry(env_packages()))


if __name__ == "__main__":
    main()
