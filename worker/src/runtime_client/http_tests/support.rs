//! The harness of the HTTP entry tests: a runtime process, requests built as API Gateway
//! builds them, and the apps under test.

use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::net::UnixStream;

use crate::runtime_client::{call, Call, Deadline, Reply, RequestId};

pub(super) const RUNTIME_DIR: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster-template/runtime");

/// Serves the listening socket on stdin as the runtime serves fd 3 (as in `wire_tests`).
pub(super) const DRIVER: &str = r#"
import sys
sys.path.insert(0, sys.argv[1])
import _socket
import runtime
runtime.HANDLER_DIR = sys.argv[2]
runtime.COMPAT_DIR = sys.argv[1] + "/compat"
runtime.serve(_socket.socket(fileno=0), runtime.load_entry(runtime.env_packages()))
"#;

/// The function's name: its apps are mounted at `/run/shop`.
pub(super) const NAME: &str = "shop";

pub(super) fn have_python(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "pass"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipping {test}: no python3 on this host");
    }
    ok
}

/// One runtime process serving one function's code.
pub(super) struct Runtime {
    pub(super) child: Child,
    pub(super) conn: UnixStream,
    pub(super) dir: tempfile::TempDir,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Runtime {
    /// A runtime for the function whose files are `files` (path, text), with `env`.
    pub(super) async fn start(files: &[(&str, &str)], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let handler = dir.path().join("handler");
        std::fs::create_dir_all(&handler).unwrap();
        for (path, text) in files {
            let p = handler.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("host")).unwrap();
        std::fs::write(dir.path().join("driver.py"), DRIVER).unwrap();
        let sock = dir.path().join("server_pipe");
        let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let mut cmd = Command::new("python3");
        cmd.args(["-B", "-S", "-E"])
            .arg(dir.path().join("driver.py"))
            .arg(RUNTIME_DIR)
            .arg(&handler)
            .current_dir(dir.path().join("host"))
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LAMBDA_NAME", NAME)
            .stdin(Stdio::from(OwnedFd::from(listener)))
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("python3 runs");
        let conn = UnixStream::connect(&sock).await.expect("connect");
        Self { child, conn, dir }
    }

    /// A runtime serving `entry` of `kind` (`wsgi`, `asgi`) from `files`.
    pub(super) async fn app(kind: &str, entry: &str, files: &[(&str, &str)]) -> Self {
        Self::start(files, &[("LAMBDA_ENTRY_TYPE", kind), ("_HANDLER", entry)]).await
    }

    pub(super) fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// One call with `event`: (kind, JSON).
    pub(super) async fn call(&mut self, event: &Value) -> (u8, Value) {
        let id = RequestId::new();
        let c = Call {
            request_id: &id,
            deadline: Deadline::after(Duration::from_secs(5)),
        };
        let event = event.to_string();
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            call(&mut self.conn, &c, event.as_bytes()),
        )
        .await
        .unwrap_or_else(|_| panic!("no answer; stderr: {}", self.stderr()))
        .unwrap_or_else(|e| panic!("{e}; stderr: {}", self.stderr()));
        let (kind, body) = match reply {
            Reply::Ok(b) => (0, b),
            Reply::HandlerError(b) => (1, b),
            Reply::RequestError(b) => (2, b),
        };
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
        (kind, value)
    }

    /// The result of a call that must succeed.
    pub(super) async fn ok(&mut self, event: &Value) -> Value {
        let (kind, value) = self.call(event).await;
        assert_eq!(kind, 0, "{value}; stderr: {}", self.stderr());
        value
    }

    /// The error of a call that must fail in the entry: (type, message).
    pub(super) async fn err(&mut self, event: &Value) -> (String, String) {
        let (kind, value) = self.call(event).await;
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
