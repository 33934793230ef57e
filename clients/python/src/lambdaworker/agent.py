"""The agent of a pool function: runs the calls LambdaPool and LambdaExecutor send.

``lambdaworker create`` deploys this file as ``lambdaworker_agent.py`` beside the user's
code, with ``lambdaworker_agent.handler`` as the function's entry and cloudpickle in its
``requirements.txt``. It needs nothing else of the client package (the client imports it for
the shared pieces), and runs on the sandbox's Python, which need not be the client's.

An event is ``{"lambdaworker": {"version", "protocol", "python", "bytecode", "call"}}``:
``call`` is the base64 of a pickle of ``(func, [(args, kwargs), ...])``, ``protocol`` the
highest pickle protocol the client reads, ``python`` the client's version, ``bytecode``
whether the pickle holds code objects (lambdas, closures, functions of ``__main__``, which
cloudpickle sends by value). The answer is ``{"lambdaworker": {"version", "protocol",
"python", "results"}}``, one result per call: ``{"value": <base64 pickle>, "bytecode":
bool}`` pickled with at most the client's protocol, or ``{"error": {"type", "message",
"traceback"}}`` when the call raised; or ``{"lambdaworker": {..., "error": {...}}}`` when the
call could not be unpickled.

Bytecode is only read by the Python version (major.minor) that wrote it: CPython does not
check it, and running another version's bytecode is undefined. So a pickle holding code is
unpickled only when both sides run the same version; functions imported from modules and
plain data cross any versions.

Unpickling runs code: this handler gives whoever may invoke the function the power to run
anything in its sandbox. It is deployed only into functions made for that (tagged
``lambdaworker:pool``) and unpickles only events shaped as above.
"""

import base64
import io
import pickle
import platform
import traceback
import types

import cloudpickle

#: The key of the events and answers, and the version of their shape.
KEY = "lambdaworker"
WIRE_VERSION = 1
#: The type of the error a call gets when its bytecode cannot cross versions.
BYTECODE_ERROR = "lambdaworker.BytecodeVersionError"


class _Pickler(cloudpickle.Pickler):
    """cloudpickle's pickler, noting whether it pickled a code object (by value)."""

    def __init__(self, file, protocol):
        super().__init__(file, protocol=protocol)
        self.bytecode = False

    def reducer_override(self, obj):
        if isinstance(obj, types.CodeType):
            self.bytecode = True
        return super().reducer_override(obj)


def dumps(obj, protocol):
    """``(pickle, holds_bytecode)`` of ``obj``, by cloudpickle with ``protocol``."""
    buffer = io.BytesIO()
    pickler = _Pickler(buffer, protocol)
    pickler.dump(obj)
    return buffer.getvalue(), pickler.bytecode


def same_bytecode(version_a, version_b):
    """True when two Python versions (``3.13.1``) read each other's bytecode."""
    return str(version_a).split(".")[:2] == str(version_b).split(".")[:2]


def _type_name(cls):
    module = getattr(cls, "__module__", "builtins")
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def describe(exc, skip_frames=0):
    """``{"type", "message", "traceback"}`` of an exception, leaving out the first
    ``skip_frames`` frames of its traceback (the agent's own) when more follow."""
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    try:
        message = str(exc)
    except Exception:  # an exception whose __str__ fails still has a repr
        message = object.__repr__(exc)
    return {
        "type": _type_name(type(exc)),
        "message": message,
        "traceback": "".join(traceback.format_exception(type(exc), exc, tb)),
    }


def bytecode_message(client_python, function_python):
    """Why a pickle holding bytecode is not unpickled across these versions."""
    return (
        f"lambdas, closures and functions of __main__ are pickled by value, as bytecode, which "
        f"does not cross Python versions (client {client_python}, function {function_python}): define the "
        f"function in a module deployed in the pool function (lambdaworker create NAME PATH...) "
        f"and import it from there"
    )


def _run(func, args, kwargs, protocol):
    try:
        value = func(*args, **kwargs)
    except BaseException as exc:  # the user's error, whatever it is, goes back to the caller
        return {"error": describe(exc, skip_frames=1)}
    try:
        data, bytecode = dumps(value, protocol)
    except BaseException as exc:
        error = describe(exc)
        error["message"] = f"the result could not be pickled: {error['message']}"
        return {"error": error}
    return {"value": base64.b64encode(data).decode("ascii"), "bytecode": bytecode}


def _load_call(request):
    """``(func, calls)``, or the error that stops them."""
    client_python = str(request.get("python", "?"))
    ours = platform.python_version()
    if request.get("bytecode") and not same_bytecode(client_python, ours):
        return None, {
            "type": BYTECODE_ERROR,
            "message": bytecode_message(client_python, ours),
            "traceback": "",
        }
    try:
        return pickle.loads(base64.b64decode(request["call"])), None
    except BaseException as exc:
        error = describe(exc)
        error["message"] = (
            f"could not unpickle the call: {error['message']}. A function imported from a module "
            f"is sent by reference: that module must be deployed in the pool function too "
            f"(lambdaworker create NAME PATH...)"
        )
        return None, error


def handler(event):
    """The function's entry."""
    request = event.get(KEY) if isinstance(event, dict) else None
    if not isinstance(request, dict) or not isinstance(request.get("call"), str):
        raise ValueError(
            "not a lambdaworker pool call: this function runs only calls of LambdaPool and LambdaExecutor"
        )
    if request.get("version") != WIRE_VERSION:
        raise ValueError(
            f"the client speaks version {request.get('version')!r} of the pool's calls, "
            f"this agent version {WIRE_VERSION}: deploy the function again with the "
            f"client's lambdaworker create"
        )
    requested = request.get("protocol")
    protocol = min(requested if isinstance(requested, int) else 2, pickle.HIGHEST_PROTOCOL)
    answer = {"version": WIRE_VERSION, "protocol": protocol, "python": platform.python_version()}
    loaded, error = _load_call(request)
    if error is not None:
        answer["error"] = error
        return {KEY: answer}
    func, calls = loaded
    answer["results"] = [_run(func, args, kwargs, protocol) for args, kwargs in calls]
    return {KEY: answer}
