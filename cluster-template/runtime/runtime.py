"""lambdaworker's in-sandbox runtime: serves one function's calls over /host/server_pipe.

The worker creates the listening unix socket (bound at <scratch>/server_pipe, seen here as
/host/server_pipe) and passes it as fd 3, so it can connect before this interpreter is up.

The entry is loaded once, before the first call (load_entry): the function that _HANDLER names
as module.function (default lambda_func.handler; the module may be dotted, pkg.app), imported
from this sys.path, in order:
  /handler (the function's code), each layer (LAMBDA_LAYERS, in the function's order), each
  PYTHONPATH entry, the interpreter's standard library, the function's packages
  (LAMBDA_PACKAGES), the system's package directories, and last COMPAT_DIR (luna_lambda_tools,
  for code written for Luna; a function's own copy comes first).
The function is called with (event) when it takes one positional argument, and with (event,
context) when it takes two or *args (context: LambdaContext, as AWS's Python runtime gives it).
What it returns is awaited when it is awaitable (an async def), on one event loop kept for the
sandbox's life. Luna's entry, lambda_main.main, gets a luna_lambda_tools
StandaloneLambdaRequest whose .json is the event in place of the event itself.

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
The runtime never dies on a bad request; only the worker ends it.

Start-up time is most of a cold call, so this file imports only what it needs before the first
request: `_socket` rather than `socket` (which pulls in `enum`), the C parts of `json` through
`_json` rather than `json` (whose pure-Python half compiles regular expressions), `traceback`
only when an exception is reported, `asyncio` only for an awaitable result and `inspect` only
for an entry whose parameters its code object does not show. The interpreter runs with -S (no
`site`).
"""

import sys

import _socket

HANDLER_DIR = "/handler"
# Modules that code written for other platforms imports (luna_lambda_tools).
COMPAT_DIR = "/usr/local/lib/lambdaworker/compat"
LISTEN_FD = 3
# The version of the call protocol this file speaks (the worker reads this line; keep it one line).
CALL_PROTOCOL = 2
DEFAULT_ENTRY = "lambda_func.handler"
LUNA_ENTRY = "lambda_main.main"
OK, HANDLER_ERROR, REQUEST_ERROR = 0, 1, 2
# A request's fixed header: the protocol byte, the deadline, the request id's length.
HEADER = 10
# Without `site`, add the system's package directories so apt-installed modules still import.
SYSTEM_PATHS = ("/usr/local/lib/python3/dist-packages", "/usr/lib/python3/dist-packages")
CO_VARARGS = 0x04


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


def pythonpath():
    """PYTHONPATH's entries as the interpreter takes them, relative ones from the working
    directory (the interpreter itself is told to ignore PYTHONPATH, so that a fresh and a forked
    sandbox get the same sys.path); empty entries are skipped."""
    entries, cwd = [], None
    for p in env_paths("PYTHONPATH"):
        if not p.startswith("/"):
            if cwd is None:
                import posix

                cwd = posix.getcwd()
            p = cwd.rstrip("/") + "/" + p
        entries.append(p)
    return entries


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


class CognitoIdentity:
    """context.identity of a call not made through Amazon Cognito, as AWS gives it."""

    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self):
        self.cognito_identity_id = None
        self.cognito_identity_pool_id = None


class LambdaContext:
    """The context an (event, context) entry gets, with the fields of AWS's Python runtime:
    memory_limit_in_mb is a string, as there; aws_request_id is the worker's id of this call
    (its x-amzn-RequestId); get_remaining_time_in_millis() counts down to the worker's deadline
    (the function's timeout_s from when the worker sent the call)."""

    __slots__ = (
        "aws_request_id",
        "function_name",
        "function_version",
        "memory_limit_in_mb",
        "invoked_function_arn",
        "log_group_name",
        "log_stream_name",
        "identity",
        "client_context",
        "tenant_id",
        "_deadline_ns",
    )

    def __init__(self, function, request_id, deadline_ns):
        (
            self.function_name,
            self.function_version,
            self.memory_limit_in_mb,
            self.invoked_function_arn,
            self.log_group_name,
            self.log_stream_name,
        ) = function
        self.aws_request_id = request_id
        self.identity = CognitoIdentity()
        self.client_context = None
        self.tenant_id = None
        self._deadline_ns = deadline_ns

    def get_remaining_time_in_millis(self):
        import time

        left = (self._deadline_ns - time.monotonic_ns()) // 1000000
        return left if left > 0 else 0

    def log(self, msg):
        sys.stdout.write(str(msg))

    def __repr__(self):
        return "LambdaContext(aws_request_id=%s, function_name=%s, function_version=%s, memory_limit_in_mb=%s, invoked_function_arn=%s)" % (
            self.aws_request_id,
            self.function_name,
            self.function_version,
            self.memory_limit_in_mb,
            self.invoked_function_arn,
        )


def code_parameters(fn):
    """(required, most, keyword-only without a default) of the positional parameters of fn, read
    from its code object (most is None with *args); None when it has none to read (a class, a
    builtin, a functools.partial). Like inspect.signature, a wrapper made with functools.wraps
    counts as what it wraps."""
    while hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
    skip = 0
    bound = getattr(fn, "__func__", None)  # a bound method (which shows its function's __code__)
    if hasattr(bound, "__code__"):
        fn, skip = bound, 1  # self is given
    elif not hasattr(fn, "__code__"):
        call = getattr(type(fn), "__call__", None)  # an object whose class defines __call__
        if not hasattr(call, "__code__"):
            return None
        fn, skip = call, 1
    code = fn.__code__
    most = code.co_argcount - skip
    required = max(most - len(fn.__defaults__ or ()), 0)
    kwonly = code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount]
    kwdefaults = fn.__kwdefaults__ or {}
    missing = [k for k in kwonly if k not in kwdefaults]
    return required, None if code.co_flags & CO_VARARGS else most, missing


def signature_parameters(fn):
    """code_parameters() through inspect.signature; None when that cannot tell either."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    required = most = 0
    varargs, missing = False, []
    for p in params:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            most += 1
            required += p.default is p.empty
        elif p.kind is p.VAR_POSITIONAL:
            varargs = True
        elif p.kind is p.KEYWORD_ONLY and p.default is p.empty:
            missing.append(p.name)
    return required, None if varargs else most, missing


def takes_context(fn, entry):
    """Whether fn is called with (event, context) rather than (event). An entry that can be
    called neither way is an error naming it."""
    found = code_parameters(fn) or signature_parameters(fn)
    if found is None:
        return False
    required, most, missing = found
    usage = "an entry is called with (event) or (event, context)"
    if missing:
        raise TypeError("entry %s has keyword-only parameters without a default (%s): %s" % (entry, ", ".join(missing), usage))
    if required > 2:
        raise TypeError("entry %s takes %d positional arguments: %s" % (entry, required, usage))
    if most == 0:
        raise TypeError("entry %s takes no positional argument: %s" % (entry, usage))
    return most is None or most >= 2


class Entry:
    """The function calls run (see the module docstring): _HANDLER's module.function, whether it
    takes a context, and the error every call answers when it cannot be loaded."""

    __slots__ = ("name", "module", "function", "fn", "with_context", "request_type", "error", "function_env", "loop")

    def __init__(self, name):
        self.name = name
        self.module, _, self.function = name.rpartition(".")
        self.fn = None
        self.with_context = False
        self.request_type = None
        self.error = None
        self.function_env = None
        self.loop = None

    def load(self):
        if not self.module or not self.function:
            raise ValueError("entry %r is not module.function" % self.name)
        try:
            __import__(self.module)
        except ModuleNotFoundError as exc:
            missing = exc.name or self.module
            if missing != self.module and not self.module.startswith(missing + "."):
                raise  # a module that the entry's module imports
            rel = self.module.replace(".", "/")
            raise ModuleNotFoundError(
                "entry %s: no module %s (looked for %s/%s.py and %s/%s/__init__.py, then in the layers and packages)"
                % (self.name, self.module, HANDLER_DIR, rel, HANDLER_DIR, rel),
                name=self.module,
            ) from None
        module = sys.modules[self.module]
        fn = getattr(module, self.function, None)
        if not callable(fn):
            where = getattr(module, "__file__", None) or self.module
            raise AttributeError("%s defines no callable %s (entry %s)" % (where, self.function, self.name))
        self.with_context = takes_context(fn, self.name)
        if self.name == LUNA_ENTRY:
            import luna_lambda_tools

            self.request_type = luna_lambda_tools.StandaloneLambdaRequest
        self.function_env = (
            getenv("AWS_LAMBDA_FUNCTION_NAME"),
            getenv("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
            getenv("LAMBDA_FUNCTION_ARN"),
            getenv("AWS_LAMBDA_LOG_GROUP_NAME"),
            getenv("AWS_LAMBDA_LOG_STREAM_NAME"),
        )
        self.fn = fn

    def context(self, frame):
        request_id = frame[HEADER : HEADER + frame[9]].decode("ascii", "replace")
        return LambdaContext(self.function_env, request_id, int.from_bytes(frame[1:9], "big"))

    def wait(self, awaitable):
        """Runs an awaitable result to its end on the sandbox's event loop, made at the first."""
        loop = self.loop
        if loop is None or loop.is_closed():
            import asyncio

            loop = self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
        return loop.run_until_complete(awaitable)


def load_entry(packages):
    """Puts the function's directories on sys.path (in the module docstring's order) and loads
    its entry; an entry that cannot be loaded carries the error every call answers with."""
    entry = Entry(getenv("_HANDLER") or DEFAULT_ENTRY)
    sys.path[:0] = [HANDLER_DIR] + env_paths("LAMBDA_LAYERS") + pythonpath()
    sys.path.extend(package_paths(packages))
    sys.path.extend(SYSTEM_PATHS)
    sys.path.append(COMPAT_DIR)
    try:
        entry.load()
    except BaseException as exc:  # SystemExit and friends in module code too
        entry.fn = None
        entry.error = error_info(exc)
    finally:
        flush()
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
        if entry.with_context:
            result = entry.fn(arg, entry.context(frame))
        else:
            result = entry.fn(arg)
        if hasattr(result, "__await__"):
            result = entry.wait(result)
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
    while True:
        fd, _ = listener._accept()
        conn = _socket.socket(fileno=fd)
        try:
            while True:
                size = int.from_bytes(recv_exact(conn, 4), "big")
                frame = recv_exact(conn, size)
                kind, payload = call(entry, frame)
                conn.sendall(bytes((kind,)) + len(payload).to_bytes(4, "big") + payload)
        except (EOFError, OSError):
            pass
        finally:
            conn.close()


def main():
    listener = _socket.socket(fileno=LISTEN_FD)
    serve(listener, load_entry(env_packages()))


if __name__ == "__main__":
    main()
