"""The parts of lambdaworker's runtime (runtime.py) that only some entries need, kept apart so
that a fresh interpreter serving a plain handler(event) in lambda_func.py never compiles them:
loading any other entry (module.attr or module:attr; deciding whether it takes a context), the
context itself, awaiting an async entry, and PYTHONPATH (runtime_http.py uses the first three
for HTTP apps). runtime.py documents the rules; the zygote imports this module
once, so that forked sandboxes have it already.
"""

import sys

LUNA_ENTRY = "lambda_main.main"
CO_VARARGS = 0x04  # in a code object's co_flags: it takes *args


def pythonpath(raw):
    """PYTHONPATH's entries as the interpreter takes them, relative ones from the working
    directory (the interpreter itself is told to ignore PYTHONPATH, so that a fresh and a forked
    sandbox get the same sys.path); empty entries are skipped."""
    entries = []
    for p in raw.split(":"):
        if p and not p.startswith("/"):
            import posix

            p = posix.getcwd().rstrip("/") + "/" + p
        if p:
            entries.append(p)
    return entries


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
        self.aws_request_id = request_id.decode("ascii", "replace")
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
    builtin, a functools.partial). A wrapper that takes *args and says what it wraps
    (functools.wraps) counts as what it wraps, as inspect.signature has it."""
    target, skip = fn, 0
    bound = getattr(fn, "__func__", None)  # a bound method (which shows its function's __code__)
    if hasattr(bound, "__code__"):
        target, skip = bound, 1  # self is given
    elif not hasattr(fn, "__code__"):
        call = getattr(type(fn), "__call__", None)  # an object whose class defines __call__
        if not hasattr(call, "__code__"):
            return None
        target, skip = call, 1
    code = target.__code__
    varargs = code.co_flags & CO_VARARGS
    wrapped = getattr(fn, "__wrapped__", None)
    if varargs and wrapped is not None:
        return code_parameters(wrapped) or signature_parameters(wrapped)
    most = code.co_argcount - skip
    required = max(most - len(target.__defaults__ or ()), 0)
    kwonly = code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount]
    kwdefaults = target.__kwdefaults__ or {}
    missing = [k for k in kwonly if k not in kwdefaults]
    return required, None if varargs else most, missing


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


def split_entry(name):
    """(module, attribute path) of an entry written module.attr (the module may be dotted,
    pkg.app.handler) or, gunicorn and uvicorn style, module:attr (pkg.app:app; after the colon a
    dotted path of attributes, app:server.app)."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
    else:
        module_name, _, attr = name.rpartition(".")
    if not module_name or not attr or any(not part for part in module_name.split(".") + attr.split(".")):
        raise ValueError("entry %r is not module.attr or module:attr" % name)
    return module_name, attr


def resolve(entry, handler_dir):
    """The callable that entry (a runtime.Entry) names: imports its module and looks up its
    attribute. Raises the entry's module missing (ModuleNotFoundError naming the files looked
    for), its attribute missing or not callable (AttributeError), or what its module raised."""
    module_name, attr = split_entry(entry.name)
    try:
        __import__(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if missing != module_name and not module_name.startswith(missing + "."):
            raise  # a module that the entry's module imports
        rel = module_name.replace(".", "/")
        raise ModuleNotFoundError(
            "entry %s: no module %s (looked for %s/%s.py and %s/%s/__init__.py, then in the layers and packages)"
            % (entry.name, module_name, handler_dir, rel, handler_dir, rel),
            name=module_name,
        ) from None
    module = sys.modules[module_name]
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
    if not callable(fn):
        where = getattr(module, "__file__", None) or module_name
        raise AttributeError("%s defines no callable %s (entry %s)" % (where, attr, entry.name))
    return fn


def give_context(entry, getenv):
    """Makes calls of entry pass a LambdaContext, with this sandbox's function settings."""
    entry.context_type = LambdaContext
    entry.function_env = (
        getenv("AWS_LAMBDA_FUNCTION_NAME"),
        getenv("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
        getenv("LAMBDA_FUNCTION_ARN"),
        getenv("AWS_LAMBDA_LOG_GROUP_NAME"),
        getenv("AWS_LAMBDA_LOG_STREAM_NAME"),
    )


def load(entry, handler_dir, getenv):
    """Loads a handler entry (a runtime.Entry): its callable (resolve), and how it is called.
    Raises what every call then answers with: resolve's errors, or parameters it cannot be
    called with (TypeError)."""
    fn = resolve(entry, handler_dir)
    if takes_context(fn, entry.name):
        give_context(entry, getenv)
    if entry.name == LUNA_ENTRY:
        # The function's own luna_lambda_tools if it has one, else the platform's (last on
        # sys.path).
        import luna_lambda_tools

        entry.request_type = luna_lambda_tools.StandaloneLambdaRequest
    entry.fn = fn


def wait(entry, awaitable):
    """Runs an awaitable result to its end on the sandbox's event loop, made at the first."""
    loop = entry.loop
    if loop is None or loop.is_closed():
        import asyncio

        loop = entry.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
    return loop.run_until_complete(awaitable)
