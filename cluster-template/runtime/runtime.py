"""lambdaworker's in-sandbox runtime: serves handler calls over /host/server_pipe.

The worker creates the listening unix socket (bound at <scratch>/server_pipe, seen here as
/host/server_pipe) and passes it as fd 3, so it can connect before this interpreter is up.
The handler module /handler/lambda_func.py is loaded once; each request calls handler(event).

Wire format, on one connection, any number of calls in turn:
  request:  4-byte big-endian length N, then N bytes of JSON (the event)
  response: 1 byte kind, 4-byte big-endian length N, then N bytes of JSON
            kind 0: the handler's return value
            kind 1: the handler (or its module) raised: {"type", "message", "traceback"}
            kind 2: the request itself was unusable: {"type", "message"}
The runtime never dies on a bad request; only the worker ends it.
"""

import json
import socket
import struct
import sys
import traceback

HANDLER_PATH = "/handler/lambda_func.py"
LISTEN_FD = 3
HEADER = struct.Struct(">I")
RESPONSE = struct.Struct(">BI")
OK, HANDLER_ERROR, REQUEST_ERROR = 0, 1, 2


def error_info(exc):
    return json.dumps(
        {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(exc)),
        }
    ).encode()


def load_handler():
    """Returns (handler, None) or (None, encoded error)."""
    sys.path.insert(0, "/handler")
    try:
        import importlib.util

        spec = importlib.util.spec_from_file_location("lambda_func", HANDLER_PATH)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {HANDLER_PATH}")
        module = importlib.util.module_from_spec(spec)
        sys.modules["lambda_func"] = module
        spec.loader.exec_module(module)
        handler = getattr(module, "handler", None)
        if not callable(handler):
            raise AttributeError(f"{HANDLER_PATH} defines no callable handler(event)")
        return handler, None
    except BaseException as exc:  # SystemExit and friends in module code too
        return None, error_info(exc)
    finally:
        flush()


def flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def call(handler, load_error, body):
    if load_error is not None:
        return HANDLER_ERROR, load_error
    try:
        event = json.loads(body)
    except ValueError as exc:
        msg = {"type": "BadRequest", "message": f"event is not valid JSON: {exc}"}
        return REQUEST_ERROR, json.dumps(msg).encode()
    try:
        result = handler(event)
    except BaseException as exc:  # a handler calling sys.exit() is an error, not an exit
        return HANDLER_ERROR, error_info(exc)
    finally:
        flush()
    try:
        return OK, json.dumps(result).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        exc.args = (f"handler returned a value that is not JSON-serializable: {exc}",)
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
        conn, _ = listener.accept()
        with conn:
            try:
                while True:
                    (size,) = HEADER.unpack(recv_exact(conn, HEADER.size))
                    body = recv_exact(conn, size)
                    kind, payload = call(handler, load_error, body)
                    conn.sendall(RESPONSE.pack(kind, len(payload)) + payload)
            except (EOFError, OSError):
                continue


def main():
    listener = socket.socket(fileno=LISTEN_FD)
    handler, load_error = load_handler()
    serve(listener, handler, load_error)


if __name__ == "__main__":
    main()
