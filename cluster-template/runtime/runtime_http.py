"""lambdaworker's HTTP entries: a WSGI (PEP 3333) or ASGI 3 app that serves HTTP requests, each
given to it as an API Gateway HTTP event. runtime.py imports this module only for an entry whose
LAMBDA_ENTRY_TYPE is wsgi or asgi (and the zygote once, for its forks); at its top it imports
runtime_extras alone, so that it loads from the runtime's directory, and it takes the few
standard modules it uses (binascii, io) when it loads an entry.

The app is mounted at /run/<LAMBDA_NAME>: that is WSGI's SCRIPT_NAME and ASGI's root_path.

The event: API Gateway's HTTP API payload format 2.0 (version "2.0", rawPath below the mount,
percent-encoded; rawQueryString; headers with lowercase names; cookies apart from them;
requestContext.http; body, base64 when isBase64Encoded), or format 1.0, the REST API proxy
shape (httpMethod, path, headers and multiValueHeaders, multiValueQueryStringParameters,
requestContext.identity; the Cookie header among the headers). They are told apart by version,
else by requestContext.http against httpMethod. Any other event (a plain /runLambda call's {})
is a TypeError naming the entry and where it serves.

What a call returns, in the shape of the event's format:
  2.0: {"statusCode": int, "headers": {name: value}, "cookies": [each Set-Cookie value],
        "body": str, "isBase64Encoded": bool}
       (a header the app gave more than once is one entry, its values joined with ", ")
  1.0: {"statusCode": int, "headers": {name: value}, "multiValueHeaders": {name: [values]},
        "body": str, "isBase64Encoded": bool}
       (Set-Cookie and every header given more than once are in multiValueHeaders alone)
Header names are as the app gave them (a header's later spellings go under its first); values
are text: their bytes as UTF-8 where they are that, else as Latin-1. The body is text when it
is empty, or valid UTF-8 with a textual Content-Type (text/*, or a subtype naming json, xml or
javascript, or application/x-www-form-urlencoded) and no Content-Encoding; otherwise it is
base64 and isBase64Encoded is true. The status's reason phrase (WSGI's "404 Not Found") is not
kept.

WSGI: a full PEP 3333 environ (the Cookie header rebuilt from the cookies, joined with "; ");
start_response with exc_info (it replaces the response until the first non-empty body bytes,
then re-raises) and the write() callable; the iterable is consumed whole (a streaming body is
buffered) and its close() called.

ASGI: an http scope (spec_version 2.4; path is the whole request path, root_path included, as
the ASGI spec and uvicorn have it); receive() gives one http.request with the whole body, then
http.disconnect once the response is complete (until then it waits, as for a client that is
still connected). send() buffers http.response.start and the http.response.body chunks. An app
that returns without starting a response, or raises before its response is complete, fails the
call; an exception after a complete response (Starlette's 500 is sent, then re-raised) is
written to stderr and the response answered.

Lifespan: startup runs once per sandbox, when the entry is loaded (its time is in the init
report), on the sandbox's one event loop (runtime_extras.wait), which keeps the lifespan task
waiting for a shutdown that never comes: the worker ends a sandbox without one, so shutdown
code does not run. lifespan.startup.failed makes every call fail with its message. An app that
raises on the lifespan scope does not support it; as the ASGI spec says, it is served without
(a line on stderr says so). The lifespan scope's state is copied into each request's scope.

Both kinds also put the event and the context in the environ or scope, as "aws.event" and
"aws.context" (Mangum's keys).
"""

import sys

import runtime_extras

KINDS = ("wsgi", "asgi")
HEXDIGITS = "0123456789abcdefABCDEF"
UNHEX = {(a + b).encode(): bytes((int(a + b, 16),)) for a in HEXDIGITS for b in HEXDIGITS}
UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
TEXT_SUBTYPES = ("json", "xml", "javascript")
HTTP_VERSIONS = {"HTTP/1.0": "1.0", "HTTP/1.1": "1.1", "HTTP/2": "2", "HTTP/2.0": "2"}
# ASGI's versions: of the interface, of the HTTP spec this server follows, of the lifespan spec.
ASGI = {"version": "3.0", "spec_version": "2.4"}
ASGI_LIFESPAN = {"version": "3.0", "spec_version": "2.0"}

# Standard modules, taken when an entry is loaded (with the whole sys.path).
binascii = None
BytesIO = None


def load(entry, kind, handler_dir, getenv):
    """Loads an HTTP entry (a runtime.Entry) of kind `kind` ("wsgi" or "asgi"): resolves its
    app (runtime_extras.resolve, with its errors), and, for ASGI, runs lifespan startup. Calls
    of the entry then take (event, context)."""
    global binascii, BytesIO
    if kind not in KINDS:
        raise ValueError("entry %s: LAMBDA_ENTRY_TYPE is %r, not handler, wsgi or asgi" % (entry.name, kind))
    import binascii
    from io import BytesIO

    app = runtime_extras.resolve(entry, handler_dir)
    adapter = (Wsgi if kind == "wsgi" else Asgi)(app, entry.name, getenv("LAMBDA_NAME"))
    runtime_extras.give_context(entry, getenv)
    if kind == "asgi":
        runtime_extras.wait(entry, adapter.startup())
    entry.fn = adapter


class Request:
    """One HTTP request, from an event of either format: version ("2.0" or "1.0"), method,
    path (below the mount, percent-encoded), query (percent-encoded, no "?"), headers
    [(lowercase name, value)] with the cookies as one cookie header, body (bytes), source_ip,
    protocol ("HTTP/1.1"), domain (requestContext's, or None)."""

    __slots__ = ("version", "method", "path", "query", "headers", "body", "source_ip", "protocol", "domain")

    def header(self, name):
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def scheme(self):
        """x-forwarded-proto's first value where it is http or https, else http."""
        proto = (self.header("x-forwarded-proto") or "").split(",", 1)[0].strip().lower()
        return proto if proto in ("http", "https") else "http"

    def server(self, scheme):
        """(host, port) from the Host header (else requestContext's domainName)."""
        host = self.header("host") or self.domain or "localhost"
        port = 443 if scheme == "https" else 80
        if host.startswith("["):  # an IPv6 address
            end = host.find("]")
            if end > 0:
                rest = host[end + 1 :]
                if rest[:1] == ":" and rest[1:].isdigit():
                    port = int(rest[1:])
                return host[1:end], port
            return host, port
        name, colon, digits = host.rpartition(":")
        if colon and digits.isdigit():
            return name, int(digits)
        return host, port


def request(event, adapter):
    """The Request of an API Gateway HTTP event (format 2.0 or 1.0); a TypeError for any other."""
    if isinstance(event, dict):
        context = event.get("requestContext")
        if not isinstance(context, dict):
            context = {}
        http = context.get("http")
        version = event.get("version")
        v2 = isinstance(http, dict) and "method" in http
        v1 = isinstance(event.get("httpMethod"), str)
        if v2 and (version == "2.0" or (version is None and not v1)):
            return v2_request(event, context, http)
        if v1 and version in ("1.0", None):
            return v1_request(event, context)
    raise TypeError(adapter.not_http(event))


def v2_request(event, context, http):
    r = Request()
    r.version = "2.0"
    r.method = str(http["method"]).upper()
    r.path = str(event.get("rawPath") or http.get("path") or "/")
    query = event.get("rawQueryString")
    if query is None:
        query = encode_query((k, v) for k, v in (event.get("queryStringParameters") or {}).items())
    r.query = str(query)
    headers = [(str(k).lower(), str(v)) for k, v in (event.get("headers") or {}).items()]
    cookies = event.get("cookies")
    if cookies:
        headers = [h for h in headers if h[0] != "cookie"]
        headers.append(("cookie", "; ".join(str(c) for c in cookies)))
    r.headers = headers
    r.body = event_body(event)
    r.source_ip = http.get("sourceIp")
    r.protocol = http.get("protocol") or "HTTP/1.1"
    r.domain = context.get("domainName")
    return r


def v1_request(event, context):
    r = Request()
    r.version = "1.0"
    r.method = event["httpMethod"].upper()
    r.path = str(event.get("path") or "/")
    multi = event.get("multiValueQueryStringParameters")
    if multi:
        pairs = ((k, v) for k, values in multi.items() for v in values)
    else:
        pairs = (event.get("queryStringParameters") or {}).items()
    r.query = encode_query(pairs)
    headers = []
    seen = set()
    for k, values in (event.get("multiValueHeaders") or {}).items():
        seen.add(str(k).lower())
        headers.extend((str(k).lower(), str(v)) for v in values)
    for k, v in (event.get("headers") or {}).items():
        if str(k).lower() not in seen:
            headers.append((str(k).lower(), str(v)))
    r.headers = headers
    r.body = event_body(event)
    identity = context.get("identity")
    r.source_ip = identity.get("sourceIp") if isinstance(identity, dict) else None
    r.protocol = context.get("protocol") or "HTTP/1.1"
    r.domain = context.get("domainName")
    return r


def event_body(event):
    body = event.get("body")
    if body is None or body == "":
        return b""
    if not isinstance(body, str):
        raise TypeError("the event's body is a %s, not a string" % type(body).__name__)
    if event.get("isBase64Encoded"):
        return binascii.a2b_base64(body)
    return body.encode("utf-8")


def quote(text):
    """text percent-encoded as UTF-8, all but the unreserved characters (RFC 3986)."""
    data = str(text).encode("utf-8")
    return "".join(chr(b) if b in UNRESERVED else "%%%02X" % b for b in data)


def encode_query(pairs):
    return "&".join(quote(k) + "=" + quote(v) for k, v in pairs)


def unquote(text):
    """The bytes of text (a path) with its percent-escapes decoded; a stray % stays."""
    data = text.encode("utf-8")
    if b"%" not in data:
        return data
    parts = data.split(b"%")
    out = [parts[0]]
    for part in parts[1:]:
        byte = UNHEX.get(part[:2])
        out.append(byte + part[2:] if byte is not None else b"%" + part)
    return b"".join(out)


def native(text):
    """A WSGI native string (PEP 3333: Latin-1 code points for bytes) of text from the event,
    whose bytes are taken to be its UTF-8."""
    return text if text.isascii() else text.encode("utf-8").decode("latin-1")


def as_text(data):
    """Bytes of a response header as text: UTF-8 where they are that, else Latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def textual(content_type):
    kind = content_type.split(";", 1)[0].strip().lower()
    main, _, sub = kind.partition("/")
    return main == "text" or sub == "x-www-form-urlencoded" or any(t in sub for t in TEXT_SUBTYPES)


def result(req, status, headers, body):
    """The entry's result for a response (status int, headers [(name, value)] as text, body
    bytes) to req, in the shape of req's format (the module docstring's)."""
    content_type = encoding = ""
    for name, value in headers:
        lower = name.lower()
        if lower == "content-type":
            content_type = value
        elif lower == "content-encoding":
            encoding = value.strip().lower()
    text = "" if not body else None
    if text is None and textual(content_type) and encoding in ("", "identity"):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            pass
    encoded = text is None
    if encoded:
        text = binascii.b2a_base64(body, newline=False).decode("ascii")
    grouped = {}  # lowercase name: [name as first given, [values]]
    for name, value in headers:
        grouped.setdefault(name.lower(), [name, []])[1].append(value)
    single = {}
    if req.version == "2.0":
        cookies = []
        for lower, (name, values) in grouped.items():
            if lower == "set-cookie":
                cookies.extend(values)
            else:
                single[name] = ", ".join(values)
        return {"statusCode": status, "headers": single, "cookies": cookies, "body": text, "isBase64Encoded": encoded}
    multi = {}
    for lower, (name, values) in grouped.items():
        if lower == "set-cookie" or len(values) > 1:
            multi[name] = values
        else:
            single[name] = values[0]
    return {
        "statusCode": status,
        "headers": single,
        "multiValueHeaders": multi,
        "body": text,
        "isBase64Encoded": encoded,
    }


def write_error(what):
    """what, and the exception being handled, on stderr (the function's log)."""
    import traceback

    sys.stderr.write("%s\n%s" % (what, traceback.format_exc()))


class Adapter:
    """What both kinds share: the app, the entry's name, where it is mounted."""

    article = ""  # "a WSGI", "an ASGI"

    def __init__(self, app, name, function):
        self.app = app
        self.name = name
        self.root = "/run/" + function if function else ""

    def not_http(self, event):
        where = self.root or "/run/<function name>"
        what = "an object with keys %s" % ", ".join(sorted(map(str, event))[:8]) if isinstance(event, dict) else type(event).__name__
        if isinstance(event, dict) and not event:
            what = "{}"
        return (
            "entry %s is %s app serving HTTP requests at %s: it takes API Gateway HTTP events "
            "(payload format 2.0 or 1.0), not %s" % (self.name, self.article, where, what)
        )


class Wsgi(Adapter):
    """A WSGI app called with one event at a time (the module docstring says how)."""

    article = "a WSGI"

    def environ(self, req, event, context):
        scheme = req.scheme()
        host, port = req.server(scheme)
        env = {
            "REQUEST_METHOD": req.method,
            "SCRIPT_NAME": native(self.root),
            "PATH_INFO": unquote(req.path).decode("latin-1"),
            "QUERY_STRING": native(req.query),
            "SERVER_NAME": native(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": req.protocol,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": scheme,
            "wsgi.input": BytesIO(req.body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "aws.event": event,
            "aws.context": context,
        }
        if req.source_ip:
            env["REMOTE_ADDR"] = req.source_ip
        if req.body or req.header("content-length") is not None:
            env["CONTENT_LENGTH"] = str(len(req.body))
        for name, value in req.headers:
            if name == "content-length":
                continue
            key = "CONTENT_TYPE" if name == "content-type" else "HTTP_" + name.upper().replace("-", "_")
            value = native(value)
            if key in env:
                env[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
            else:
                env[key] = value
        return env

    def __call__(self, event, context):
        req = request(event, self)
        environ = self.environ(req, event, context)
        response = [None, None]  # status, headers
        body = []
        sent = False  # whether non-empty body bytes came (then headers count as sent)

        def start_response(status, headers, exc_info=None):
            if exc_info is not None:
                try:
                    if sent:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif response[0] is not None:
                raise AssertionError("WSGI app %s called start_response a second time without exc_info" % self.name)
            response[0] = self.status(status)
            response[1] = self.headers(headers)
            return write

        def write(data):
            nonlocal sent
            if response[0] is None:
                raise AssertionError("WSGI app %s called write() before start_response" % self.name)
            data = self.chunk(data)
            if data:
                sent = True
                body.append(data)

        iterable = self.app(environ, start_response)
        try:
            for data in iterable:
                data = self.chunk(data)
                if data:
                    if response[0] is None:
                        raise AssertionError("WSGI app %s gave body bytes before it called start_response" % self.name)
                    sent = True
                    body.append(data)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        if response[0] is None:
            raise RuntimeError("WSGI app %s returned without calling start_response" % self.name)
        return result(req, response[0], response[1], b"".join(body))

    def status(self, status):
        if not isinstance(status, str):
            raise TypeError("WSGI app %s gave start_response a status of type %s, not str" % (self.name, type(status).__name__))
        code = status.split(None, 1)[0] if status.strip() else ""
        if not (len(code) == 3 and code.isdigit()):
            raise ValueError("WSGI app %s gave start_response the status %r, not 'NNN reason'" % (self.name, status))
        return int(code)

    def headers(self, headers):
        out = []
        for item in headers:
            try:
                name, value = item
            except (TypeError, ValueError):
                raise TypeError("WSGI app %s gave start_response the header %r, not a (name, value) pair" % (self.name, item)) from None
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError("WSGI app %s gave start_response the header %r: names and values are str" % (self.name, item))
            out.append((name, latin1_text(value)))
        return out

    def chunk(self, data):
        if isinstance(data, bytes):
            return data
        if isinstance(data, (bytearray, memoryview)):
            return bytes(data)
        raise TypeError("WSGI app %s gave a body chunk of type %s, not bytes" % (self.name, type(data).__name__))


def latin1_text(value):
    """A WSGI header value (Latin-1 code points for bytes) as text (as_text of those bytes); a
    value outside Latin-1 as it is."""
    try:
        data = value.encode("latin-1")
    except UnicodeEncodeError:
        return value
    return value if data.isascii() else as_text(data)


def to_bytes(value, what):
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("latin-1")
    raise TypeError("%s is of type %s, not bytes" % (what, type(value).__name__))


class Asgi(Adapter):
    """An ASGI 3 app called with one event at a time, its lifespan started once (the module
    docstring says how)."""

    article = "an ASGI"

    def __init__(self, app, name, function):
        super().__init__(app, name, function)
        self.state = None  # the lifespan state, copied into each request's scope
        self.lifespan = None  # the lifespan task, kept (asyncio keeps only weak references)
        self.shutdown = None  # what the lifespan task waits for: never set

    async def startup(self):
        """Lifespan startup: returns once the app has completed it, returned, or raised (it then
        does not support lifespan); raises RuntimeError with the message of
        lifespan.startup.failed."""
        import asyncio

        loop = asyncio.get_running_loop()
        state = {}
        scope = {"type": "lifespan", "asgi": dict(ASGI_LIFESPAN), "state": state}
        outcome = loop.create_future()
        self.shutdown = asyncio.Event()
        started = False

        def settle(value):
            if not outcome.done():
                outcome.set_result(value)

        async def receive():
            nonlocal started
            if not started:
                started = True
                return {"type": "lifespan.startup"}
            await self.shutdown.wait()  # the worker ends the sandbox without a shutdown
            return {"type": "lifespan.shutdown"}

        async def send(message):
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "lifespan.startup.complete":
                settle(("complete", None))
            elif kind == "lifespan.startup.failed":
                settle(("failed", str(message.get("message") or "")))
            elif kind not in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                raise RuntimeError("ASGI app %s sent %r during lifespan startup" % (self.name, message))

        async def run():
            try:
                await awaitable(self.app(scope, receive, send), self.name)
            except Exception as exc:
                if not outcome.done():
                    settle(("unsupported", exc))
                elif outcome.result()[0] == "complete":  # after failed, its message says why
                    write_error("entry %s: the ASGI lifespan task raised after startup" % self.name)
            else:
                settle(("returned", None))

        self.lifespan = loop.create_task(run())
        try:
            self.lifespan._log_destroy_pending = False  # it is meant to wait for ever
        except AttributeError:
            pass
        how, detail = await outcome
        if how == "failed":
            raise RuntimeError("entry %s: ASGI lifespan startup failed: %s" % (self.name, detail))
        if how == "unsupported":
            sys.stderr.write(
                "entry %s: the app does not support the ASGI lifespan protocol (%s: %s); served without it\n"
                % (self.name, type(detail).__name__, detail)
            )
        else:
            self.state = state

    def scope(self, req, event, context):
        scheme = req.scheme()
        return {
            "type": "http",
            "asgi": dict(ASGI),
            "http_version": HTTP_VERSIONS.get(req.protocol.upper(), "1.1"),
            "method": req.method,
            "scheme": scheme,
            "path": self.root + unquote(req.path).decode("utf-8", "replace"),
            "raw_path": (self.root + req.path).encode("utf-8"),
            "query_string": req.query.encode("utf-8"),
            "root_path": self.root,
            "headers": [(name.encode("utf-8"), value.encode("utf-8")) for name, value in req.headers],
            "client": (req.source_ip, 0) if req.source_ip else None,
            "server": req.server(scheme),
            "aws.event": event,
            "aws.context": context,
        }

    def __call__(self, event, context):
        req = request(event, self)
        scope = self.scope(req, event, context)
        if self.state is not None:
            scope["state"] = self.state.copy()
        return self.serve(req, scope)

    async def serve(self, req, scope):
        import asyncio

        name = self.name
        complete = asyncio.Event()
        status = None
        headers = []
        body = []
        trailers = received = False

        async def receive():
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": req.body, "more_body": False}
            await complete.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            nonlocal status, trailers
            kind = message.get("type") if isinstance(message, dict) else None
            if complete.is_set():
                return  # the response is complete: the spec has further messages ignored
            if kind == "http.response.start":
                if status is not None:
                    raise RuntimeError("ASGI app %s sent http.response.start twice" % name)
                code = message.get("status")
                if type(code) is not int:
                    raise TypeError("ASGI app %s sent the status %r, not an int" % (name, code))
                for item in message.get("headers") or ():
                    key, value = item
                    headers.append((to_bytes(key, "a header name").decode("latin-1"), as_text(to_bytes(value, "a header value"))))
                trailers = bool(message.get("trailers"))
                status = code
            elif kind == "http.response.body":
                if status is None:
                    raise RuntimeError("ASGI app %s sent http.response.body before http.response.start" % name)
                data = message.get("body", b"")
                if data:
                    body.append(to_bytes(data, "http.response.body's body"))
                if not message.get("more_body", False) and not trailers:
                    complete.set()
            elif kind == "http.response.trailers":
                if status is None:
                    raise RuntimeError("ASGI app %s sent http.response.trailers before http.response.start" % name)
                if not message.get("more_trailers", False):  # trailers are not passed on
                    complete.set()
            else:
                raise RuntimeError("ASGI app %s sent %r, not an http.response message" % (name, kind if kind else message))

        try:
            await awaitable(self.app(scope, receive, send), name)
        except Exception:
            if not complete.is_set():
                raise
            write_error("entry %s: the ASGI app raised after its response was complete; answering with that response" % name)
        finally:
            complete.set()  # what still waits in receive() gets http.disconnect
        if status is None:
            raise RuntimeError("ASGI app %s returned without sending a response (http.response.start)" % name)
        return result(req, status, headers, b"".join(body))


def awaitable(value, name):
    if not hasattr(value, "__await__"):
        raise TypeError("entry %s is not an ASGI 3 app: calling it with (scope, receive, send) returned %s, not an awaitable" % (name, type(value).__name__))
    return value
