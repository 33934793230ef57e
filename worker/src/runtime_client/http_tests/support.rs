//! The harness of the HTTP entry tests: `wire_tests`'s runtime process serving an HTTP
//! entry, requests built as API Gateway builds them, and the apps under test.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

pub(super) use crate::runtime_client::wire_tests::{have_python, Runtime};
use crate::runtime_client::RequestId;

/// The function's name: its apps are mounted at `/run/shop`.
pub(super) const NAME: &str = "shop";

impl Runtime {
    /// A runtime (`wire_tests`'s) for the function whose files are `files`, mounted at
    /// `/run/shop`, with `env`.
    pub(super) async fn http_start(files: &[(&str, &str)], env: &[(&str, &str)]) -> Self {
        let mut all = vec![("LAMBDA_NAME", NAME)];
        all.extend_from_slice(env);
        Self::start(files, &all).await
    }

    /// A runtime serving `entry` of `kind` (`wsgi`, `asgi`) from `files`.
    pub(super) async fn app(kind: &str, entry: &str, files: &[(&str, &str)]) -> Self {
        Self::http_start(files, &[("LAMBDA_ENTRY_TYPE", kind), ("_HANDLER", entry)]).await
    }

    /// One call with `event`: (kind, JSON).
    pub(super) async fn call_event(&mut self, event: &Value) -> (u8, Value) {
        self.call_with(
            &RequestId::new(),
            Duration::from_secs(5),
            &event.to_string(),
        )
        .await
    }

    /// The result of a call that must succeed.
    pub(super) async fn ok(&mut self, event: &Value) -> Value {
        let (kind, value) = self.call_event(event).await;
        assert_eq!(kind, 0, "{value}; stderr: {}", self.stderr());
        value
    }

    /// The error of a call that must fail in the entry: (type, message).
    pub(super) async fn err(&mut self, event: &Value) -> (String, String) {
        let (kind, value) = self.call_event(event).await;
        assert_eq!(kind, 1, "{value}");
        let text = |k: &str| value[k].as_str().unwrap_or_default().to_owned();
        (text("type"), text("message"))
    }
}

/// A request as the worker gives it to an app.
#[derive(Clone)]
pub(super) struct Req<'a> {
    pub(super) method: &'a str,
    /// Below the mount, percent-encoded as received.
    pub(super) path: &'a str,
    /// As received, no `?`.
    pub(super) query: &'a str,
    /// Lowercase names, in order; a name may repeat (HTTP/2 cookies, repeated headers).
    pub(super) headers: Vec<(&'a str, &'a str)>,
    pub(super) body: Option<(&'a str, bool)>,
}

impl<'a> Req<'a> {
    pub(super) fn get(path: &'a str) -> Self {
        Req {
            method: "GET",
            path,
            query: "",
            headers: vec![("host", "localhost:8080"), ("user-agent", "curl/8.5.0")],
            body: None,
        }
    }

    pub(super) fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.iter().find(|(n, _)| *n == name).map(|h| h.1)
    }

    /// `(name, value)` pairs of the query, decoded as API Gateway decodes them.
    pub(super) fn query_pairs(&self) -> Vec<(String, String)> {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        self.query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect()
    }

    /// The payload format 2.0 event, as API Gateway's HTTP API builds it.
    pub(super) fn v2(&self) -> Value {
        let mut headers = serde_json::Map::new();
        let mut cookies = Vec::new();
        for (name, value) in &self.headers {
            if *name == "cookie" {
                cookies.extend(value.split("; ").map(|c| json!(c)));
                continue;
            }
            let joined = match headers.get(*name).and_then(Value::as_str) {
                Some(before) => format!("{before},{value}"),
                None => (*value).to_owned(),
            };
            headers.insert((*name).to_owned(), json!(joined));
        }
        let host = self.header("host").unwrap_or("localhost");
        let mut event = json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": self.path,
            "rawQueryString": self.query,
            "headers": headers,
            "requestContext": {
                "accountId": "anonymous",
                "apiId": "lambdaworker",
                "domainName": host,
                "domainPrefix": host.split('.').next().unwrap(),
                "http": {
                    "method": self.method,
                    "path": self.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "192.0.2.7",
                    "userAgent": self.header("user-agent").unwrap_or(""),
                },
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "routeKey": "$default",
                "stage": "$default",
                "time": "12/Mar/2025:19:03:58 +0000",
                "timeEpoch": 1741806238000u64,
            },
            "isBase64Encoded": matches!(self.body, Some((_, true))),
        });
        if !cookies.is_empty() {
            event["cookies"] = Value::Array(cookies);
        }
        let pairs = self.query_pairs();
        if !pairs.is_empty() {
            let mut params = serde_json::Map::new();
            for (k, v) in pairs {
                let joined = match params.get(&k).and_then(Value::as_str) {
                    Some(before) => format!("{before},{v}"),
                    None => v,
                };
                params.insert(k, json!(joined));
            }
            event["queryStringParameters"] = Value::Object(params);
        }
        if let Some((body, _)) = self.body {
            event["body"] = json!(body);
        }
        event
    }

    /// The payload format 1.0 event (the REST API proxy shape).
    pub(super) fn v1(&self) -> Value {
        let mut headers = serde_json::Map::new();
        let mut multi = serde_json::Map::new();
        for (name, value) in &self.headers {
            headers.insert((*name).to_owned(), json!(value));
            let values = multi.entry(*name).or_insert_with(|| json!([]));
            values.as_array_mut().unwrap().push(json!(value));
        }
        let mut query = serde_json::Map::new();
        let mut multi_query = serde_json::Map::new();
        for (k, v) in self.query_pairs() {
            query.insert(k.clone(), json!(v));
            let values = multi_query.entry(k).or_insert_with(|| json!([]));
            values.as_array_mut().unwrap().push(json!(v));
        }
        let or_null = |m: serde_json::Map<String, Value>| {
            if m.is_empty() {
                Value::Null
            } else {
                Value::Object(m)
            }
        };
        json!({
            "version": "1.0",
            "resource": "$default",
            "path": self.path,
            "httpMethod": self.method,
            "headers": headers,
            "multiValueHeaders": multi,
            "queryStringParameters": or_null(query),
            "multiValueQueryStringParameters": or_null(multi_query),
            "requestContext": {
                "accountId": "anonymous",
                "apiId": "lambdaworker",
                "domainName": self.header("host").unwrap_or("localhost"),
                "httpMethod": self.method,
                "path": format!("/run/{NAME}{}", self.path),
                "protocol": "HTTP/1.1",
                "identity": {"sourceIp": "192.0.2.7", "userAgent": self.header("user-agent")},
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "requestTimeEpoch": 1741806238000u64,
                "resourcePath": "$default",
                "stage": "$default",
            },
            "pathParameters": null,
            "stageVariables": null,
            "body": self.body.map(|b| b.0),
            "isBase64Encoded": matches!(self.body, Some((_, true))),
        })
    }
}

pub(super) fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub(super) fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("a base64 body"))
        .expect("valid base64")
}

/// The JSON an echo route answered with (a text body).
pub(super) fn echoed(result: &Value) -> Value {
    assert_eq!(result["isBase64Encoded"], false, "{result}");
    serde_json::from_str(result["body"].as_str().unwrap()).unwrap()
}

/// A PEP 3333 app that routes on PATH_INFO.
pub(super) const WSGI_APP: &str = r#"import json
import sys

CLOSED = []
KEYS = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH",
        "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR")


def app(environ, start_response):
    return ROUTES[environ["PATH_INFO"].split("/")[1]](environ, start_response)


def teapot(environ, start_response):
    start_response("418 I'm a teapot", [
        ("Content-Type", "application/octet-stream"),
        ("X-Teapot", "short and stout"),
        ("Set-Cookie", "a=1; Path=/"),
        ("Set-Cookie", "b=2"),
    ])
    return [bytes(range(256))]


def echo(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    out = {k: environ.get(k) for k in KEYS}
    out["HTTP"] = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    out["body"] = body.decode("latin-1")
    out["wsgi"] = {
        "version": list(environ["wsgi.version"]),
        "url_scheme": environ["wsgi.url_scheme"],
        "multithread": environ["wsgi.multithread"],
        "multiprocess": environ["wsgi.multiprocess"],
        "run_once": environ["wsgi.run_once"],
        "input_terminated": environ["wsgi.input_terminated"],
        "errors_is_stderr": environ["wsgi.errors"] is sys.stderr,
    }
    out["aws"] = [environ["aws.event"]["version"], type(environ["aws.context"].aws_request_id).__name__]
    out["native"] = all(type(v) is str for k, v in environ.items() if k.isupper())
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(out).encode()]


class Body:
    def __init__(self, parts):
        self.parts = parts

    def __iter__(self):
        return iter(self.parts)

    def close(self):
        CLOSED.append("body")


def written(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    write(b"one ")
    write(b"")
    return Body([b"two ", b"", bytearray(b"three")])


def generated(environ, start_response):
    def gen():
        try:
            start_response("201 Created", [("Content-Type", "text/plain"), ("X-Closed", str(len(CLOSED)))])
            yield b"made "
            yield b""
            yield "caf\u00e9".encode()
        finally:
            CLOSED.append("generator")

    return gen()


def replaced(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Before", "1")])
    try:
        raise ValueError("boom")
    except ValueError:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"replaced"]


def too_late(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"partial")
    try:
        raise KeyError("late")
    except KeyError:
        start_response("500 Internal Server Error", [], sys.exc_info())
    return [b"never"]


def twice(environ, start_response):
    start_response("200 OK", [])
    start_response("204 No Content", [])
    return []


def silent(environ, start_response):
    return []


def text(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Encoding", "gzip")])
    return [b"not really gzip"]


ROUTES = {
    "teapot": teapot, "echo": echo, "written": written, "generated": generated,
    "replaced": replaced, "too-late": too_late, "twice": twice, "silent": silent, "gzip": text,
}


class Holder:
    app = staticmethod(app)


NOT_CALLABLE = 42
"#;

/// An ASGI 3 app with lifespan that routes on the path below root_path.
pub(super) const ASGI_APP: &str = r#"import asyncio
import json

STARTS = []
DISCONNECTS = []


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup", message
        STARTS.append([scope["asgi"]["version"], id(asyncio.get_running_loop())])
        scope["state"]["pool"] = "ready"
        await send({"type": "lifespan.startup.complete"})
        await receive()  # a shutdown that never comes
        return
    assert scope["type"] == "http", scope["type"]
    route = scope["path"][len(scope["root_path"]):].split("/")[1]
    await ROUTES[route](scope, receive, send)


async def start(send, status=200, content_type=b"application/json"):
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})


async def teapot(scope, receive, send):
    await send({"type": "http.response.start", "status": 418, "headers": [
        (b"content-type", b"application/octet-stream"),
        (b"x-teapot", b"short and stout"),
        (b"set-cookie", b"a=1; Path=/"),
        (b"set-cookie", b"b=2"),
    ]})
    await send({"type": "http.response.body", "body": bytes(range(128)), "more_body": True})
    await send({"type": "http.response.body", "body": bytes(range(128, 256))})


async def echo(scope, receive, send):
    request = await receive()
    out = {k: scope.get(k) for k in ("type", "asgi", "http_version", "method", "scheme", "path", "root_path", "client", "server", "state")}
    out["raw_path"] = scope["raw_path"].decode("latin-1")
    out["query_string"] = scope["query_string"].decode("latin-1")
    out["headers"] = [[type(n).__name__, n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
    out["request"] = {"type": request["type"], "body": request["body"].decode("latin-1"), "more_body": request["more_body"]}
    out["starts"] = STARTS
    out["loop"] = id(asyncio.get_running_loop())
    out["disconnects"] = DISCONNECTS
    out["aws"] = [scope["aws.event"]["version"], type(scope["aws.context"].aws_request_id).__name__]
    await start(send)
    await send({"type": "http.response.body", "body": json.dumps(out).encode()})


async def disconnect(scope, receive, send):
    await receive()
    waiting = asyncio.ensure_future(receive())
    await asyncio.sleep(0.01)
    early = waiting.done()
    await start(send, content_type=b"text/plain")
    await send({"type": "http.response.body", "body": b"bye", "more_body": True})
    await asyncio.sleep(0.01)
    early = early or waiting.done()
    await send({"type": "http.response.body", "body": b""})
    DISCONNECTS.append({"early": early, "then": (await waiting)["type"]})


async def silent(scope, receive, send):
    await receive()


async def after(scope, receive, send):
    await start(send, 500, b"text/plain")
    await send({"type": "http.response.body", "body": b"Internal Server Error"})
    raise RuntimeError("raised after the response")


async def broken(scope, receive, send):
    await start(send)
    raise LookupError("broken mid-response")


ROUTES = {"teapot": teapot, "echo": echo, "disconnect": disconnect, "silent": silent, "after": after, "broken": broken}
"#;
