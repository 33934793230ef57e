"""lambdaworker's in-sandbox runtime: serves handler calls over /host/server_pipe.

The worker creates the listening unix socket (bound at <scratch>/server_pipe, seen here as
/host/server_pipe) and passes it as fd 3, so it can connect before this interpreter is up.
The handler module /handler/lambda_func.py is imported once; each request calls handler(event).

Wire format, on one connection, any number of calls in turn:
  request:  4-byte big-endian length N, then N bytes of JSON (the event)
  response: 1 byte kind, 4-byte big-endian length N, then N bytes of JSON
            kind 0: the handler's return value
            kind 1: the handler (or its module) raised: {"type", "message", "traceback"}
            kind 2: the request itself was unusable: {"type", "message"}
The runtime never dies on a bad request; only the worker ends it.

Start-up time is most of a cold call, so this file imports only what it needs before the first
request: `_socket` rather than `socket` (which pulls in `enum`), the C parts of `json` through
`_json` rather than `json` (whose pure-Python half compiles regular expressions), and
`traceback` only when an exception is reported. The interpreter runs with -S (no `site`).
"""

import sys

import _socket

HANDLER_DIR = "/handler"
LISTEN_FD = 3
OK, HANDLER_ERROR, REQUEST_ERROR = 0, 1, 2
# Without `site`, add the system's package directories so apt-installed modules still import.
SYSTEM_PATHS = ("/usr/local/lib/python3/dist-packages", "/usr/lib/python3/dist-packages")


def _plain_json():
    import json

    return json.loads, lambda obj: json.dumps(obj, allow_nan=False)


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
        text = data.decode("utf-8").strip(" \t\n\r")
        try:
            obj, end = scan(text, 0)
        except StopIteration:
            raise ValueError("expecting a JSON value") from None
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


def env_packages():
    """The lambda's package directories (/packages/<name>/<version>, from requirements.txt), in
    the order the worker lists them in LAMBDA_PACKAGES."""
    import posix

    raw = posix.environ.get(b"LAMBDA_PACKAGES", b"").decode()
    return [p for p in raw.split(":") if p]


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


def load_handler(packages):
    """Returns (handler, None) or (None, encoded error)."""
    sys.path[:0] = [HANDLER_DIR]
    sys.path.extend(package_paths(packages))
    sys.path.extend(SYSTEM_PATHS)
    try:
        import lambda_func

        handler = getattr(lambda_func, "handler", None)
        if not callable(handler):
            raise AttributeError("%s/lambda_func.py defines no callable handler(event)" % HANDLER_DIR)
        return handler, None
    except BaseException as exc:  # SystemExit and friends in module code too
        return None, error_info(exc)
    finally:
        flush()


def call(handler, load_error, body):
    if load_error is not None:
        return HANDLER_ERROR, load_error
    try:
        event = loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError, MemoryError) as exc:
        msg = {"type": "BadRequest", "message": "event is not valid JSON: %s" % exc}
        return REQUEST_ERROR, dumps(msg).encode()
    try:
        result = handler(event)
    except BaseException as exc:  # a handler calling sys.exit() is an error, not an exit
        return HANDLER_ERROR, error_info(exc)
    finally:
        flush()
    try:
        return OK, dumps(result).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        exc.args = ("handler returned a value that is not JSON-serializable: %s" % exc,)
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


def serve(listener, handler, load_error):
    while True:
        fd, _ = listener._accept()
        conn = _socket.socket(fileno=fd)
        try:
            while True:
                size = int.from_bytes(recv_exact(conn, 4), "big")
                body = recv_exact(conn, size)
                kind, payload = call(handler, load_error, body)
                conn.sendall(bytes((kind,)) + len(payload).to_bytes(4, "big") + payload)
        except (EOFError, OSError):
            pass
        finally:
            conn.close()


def main():
    listener = _socket.socket(fileno=LISTEN_FD)
    handler, load_error = load_handler(env_packages())
    serve(listener, handler, load_error)


if __name__ == "__main__":
    main()
