//! Cross-language tests of HTTP entries (`LAMBDA_ENTRY_TYPE` `wsgi` and `asgi`, served by
//! `cluster-template/runtime/runtime_http.py`), as `wire_tests` tests the other entries: the
//! host's `python3` runs the real `runtime.py` on a listening socket and the worker's client
//! calls it, with API Gateway HTTP events (payload formats 2.0 and 1.0) built here by hand.
//! The apps are small PEP 3333 and ASGI 3 apps written below; no framework is needed.

use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::net::UnixStream;

use super::{call, Call, Deadline, Reply, RequestId};

const RUNTIME_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster-template/runtime");

/// Serves the listening socket on stdin as the runtime serves fd 3 (as in `wire_tests`).
const DRIVER: &str = r#"
import sys
sys.path.insert(0, sys.argv[1])
import _socket
import runtime
runtime.HANDLER_DIR = sys.argv[2]
runtime.COMPAT_DIR = sys.argv[1] + "/compat"
runtime.serve(_socket.socket(fileno=0), runtime.load_entry(runtime.env_packages()))
"#;

/// The function's name: its apps are mounted at `/run/shop`.
const NAME: &str = "shop";

fn have_python(test: &str) -> bool {
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
struct Runtime {
    child: Child,
    conn: UnixStream,
    dir: tempfile::TempDir,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Runtime {
    /// A runtime for the function whose files are `files` (path, text), with `env`.
    async fn start(files: &[(&str, &str)], env: &[(&str, &str)]) -> Self {
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
    async fn app(kind: &str, entry: &str, files: &[(&str, &str)]) -> Self {
        Self::start(files, &[("LAMBDA_ENTRY_TYPE", kind), ("_HANDLER", entry)]).await
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// One call with `event`: (kind, JSON).
    async fn call(&mut self, event: &Value) -> (u8, Value) {
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
    async fn ok(&mut self, event: &Value) -> Value {
        let (kind, value) = self.call(event).await;
        assert_eq!(kind, 0, "{value}; stderr: {}", self.stderr());
        value
    }

    /// The error of a call that must fail in the entry: (type, message).
    async fn err(&mut self, event: &Value) -> (String, String) {
        let (kind, value) = self.call(event).await;
        assert_eq!(kind, 1, "{value}");
        let text = |k: &str| value[k].as_str().unwrap_or_default().to_owned();
        (text("type"), text("message"))
    }
}

/// A request as the worker gives it to an app.
#[derive(Clone)]
struct Req<'a> {
    method: &'a str,
    /// Below the mount, percent-encoded as received.
    path: &'a str,
    /// As received, no `?`.
    query: &'a str,
    /// Lowercase names, in order; a name may repeat (HTTP/2 cookies, repeated headers).
    headers: Vec<(&'a str, &'a str)>,
    body: Option<(&'a str, bool)>,
}

impl<'a> Req<'a> {
    fn get(path: &'a str) -> Self {
        Req {
            method: "GET",
            path,
            query: "",
            headers: vec![("host", "localhost:8080"), ("user-agent", "curl/8.5.0")],
            body: None,
        }
    }

    fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.iter().find(|(n, _)| *n == name).map(|h| h.1)
    }

    /// `(name, value)` pairs of the query, decoded as API Gateway decodes them.
    fn query_pairs(&self) -> Vec<(String, String)> {
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
    fn v2(&self) -> Value {
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
    fn v1(&self) -> Value {
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

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("a base64 body"))
        .expect("valid base64")
}

/// The JSON an echo route answered with (a text body).
fn echoed(result: &Value) -> Value {
    assert_eq!(result["isBase64Encoded"], false, "{result}");
    serde_json::from_str(result["body"].as_str().unwrap()).unwrap()
}

/// A PEP 3333 app that routes on PATH_INFO.
const WSGI_APP: &str = r#"import json
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
const ASGI_APP: &str = r#"import asyncio
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

#[tokio::test]
async fn a_wsgi_app_answers_a_status_headers_cookies_and_a_binary_body() {
    if !have_python("a_wsgi_app_answers_a_status_headers_cookies_and_a_binary_body") {
        return;
    }
    let mut rt = Runtime::app("wsgi", "web:app", &[("web.py", WSGI_APP)]).await;
    let all: Vec<u8> = (0..=255).collect();
    let v = rt.ok(&Req::get("/teapot").v2()).await;
    assert_eq!(
        v,
        json!({
            "statusCode": 418,
            "headers": {"Content-Type": "application/octet-stream", "X-Teapot": "short and stout"},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": b64(&all),
            "isBase64Encoded": true,
        })
    );
    // The same response to a payload format 1.0 event: cookies among multiValueHeaders.
    let v = rt.ok(&Req::get("/teapot").v1()).await;
    assert_eq!(
        v,
        json!({
            "statusCode": 418,
            "headers": {"Content-Type": "application/octet-stream", "X-Teapot": "short and stout"},
            "multiValueHeaders": {"Set-Cookie": ["a=1; Path=/", "b=2"]},
            "body": b64(&all),
            "isBase64Encoded": true,
        })
    );
    // Text that is encoded (Content-Encoding) is binary too.
    let v = rt.ok(&Req::get("/gzip").v2()).await;
    assert_eq!(v["isBase64Encoded"], true, "{v}");
    assert_eq!(unb64(&v["body"]), b"not really gzip");
}

#[tokio::test]
async fn an_asgi_app_answers_a_status_headers_cookies_and_a_binary_body() {
    if !have_python("an_asgi_app_answers_a_status_headers_cookies_and_a_binary_body") {
        return;
    }
    let mut rt = Runtime::app("asgi", "web:app", &[("web.py", ASGI_APP)]).await;
    let all: Vec<u8> = (0..=255).collect();
    let v = rt.ok(&Req::get("/teapot").v2()).await;
    assert_eq!(
        v,
        json!({
            "statusCode": 418,
            "headers": {"content-type": "application/octet-stream", "x-teapot": "short and stout"},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": b64(&all),
            "isBase64Encoded": true,
        })
    );
    let v = rt.ok(&Req::get("/teapot").v1()).await;
    assert_eq!(
        v["multiValueHeaders"],
        json!({"set-cookie": ["a=1; Path=/", "b=2"]})
    );
    assert_eq!(
        v["headers"],
        json!({"content-type": "application/octet-stream", "x-teapot": "short and stout"})
    );
    assert_eq!(unb64(&v["body"]), all);
}

/// A request with a path and query to decode, cookies, repeated headers and a forwarded scheme.
fn detailed<'a>() -> Req<'a> {
    Req {
        method: "GET",
        path: "/echo/caf%C3%A9/a%2Fb",
        query: "q=caf%C3%A9&tag=a&tag=b&empty=",
        headers: vec![
            ("host", "shop.example:8443"),
            ("user-agent", "curl/8.5.0"),
            ("accept", "text/html"),
            ("accept", "application/json"),
            ("x-forwarded-proto", "https"),
            ("cookie", "session=abc; theme=dark"),
        ],
        body: None,
    }
}

#[tokio::test]
async fn the_path_query_headers_and_mount_reach_a_wsgi_app() {
    if !have_python("the_path_query_headers_and_mount_reach_a_wsgi_app") {
        return;
    }
    let mut rt = Runtime::app("wsgi", "web:app", &[("web.py", WSGI_APP)]).await;
    let e = echoed(&rt.ok(&detailed().v2()).await);
    assert_eq!(e["REQUEST_METHOD"], "GET");
    assert_eq!(e["SCRIPT_NAME"], "/run/shop");
    // Percent-decoded, its bytes as Latin-1 code points (PEP 3333).
    assert_eq!(e["PATH_INFO"], "/echo/caf\u{c3}\u{a9}/a/b");
    assert_eq!(e["QUERY_STRING"], "q=caf%C3%A9&tag=a&tag=b&empty=");
    assert_eq!(
        (&e["SERVER_NAME"], &e["SERVER_PORT"]),
        (&json!("shop.example"), &json!("8443"))
    );
    assert_eq!(e["SERVER_PROTOCOL"], "HTTP/1.1");
    assert_eq!(e["REMOTE_ADDR"], "192.0.2.7");
    assert_eq!(e["CONTENT_LENGTH"], Value::Null, "no body, no length");
    assert_eq!(e["HTTP"]["HTTP_COOKIE"], "session=abc; theme=dark");
    assert_eq!(e["HTTP"]["HTTP_ACCEPT"], "text/html,application/json");
    assert_eq!(e["HTTP"]["HTTP_HOST"], "shop.example:8443");
    assert_eq!(e["HTTP"]["HTTP_USER_AGENT"], "curl/8.5.0");
    assert_eq!(
        e["wsgi"],
        json!({
            "version": [1, 0],
            "url_scheme": "https",
            "multithread": false,
            "multiprocess": true,
            "run_once": false,
            "input_terminated": true,
            "errors_is_stderr": true,
        })
    );
    assert_eq!(e["aws"], json!(["2.0", "str"]));
    assert_eq!(e["native"], true);

    // Payload format 1.0: the query rebuilt from its (decoded) parameters, the Cookie header
    // among the headers.
    // (serde_json's objects here are sorted by key, so the parameters come in that order.)
    let e = echoed(&rt.ok(&detailed().v1()).await);
    assert_eq!(e["PATH_INFO"], "/echo/caf\u{c3}\u{a9}/a/b");
    assert_eq!(e["QUERY_STRING"], "empty=&q=caf%C3%A9&tag=a&tag=b");
    assert_eq!(e["HTTP"]["HTTP_COOKIE"], "session=abc; theme=dark");
    assert_eq!(e["HTTP"]["HTTP_ACCEPT"], "text/html,application/json");
    assert_eq!(e["REMOTE_ADDR"], "192.0.2.7");
    assert_eq!(e["aws"], json!(["1.0", "str"]));

    // The mount itself: PATH_INFO "/", no query; no Host port, so the scheme's.
    let mut root = Req::get("/");
    root.headers = vec![("host", "localhost")];
    let source = r#"import json

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    keys = ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT", "wsgi.url_scheme")
    return [json.dumps([environ[k] for k in keys]).encode()]
"#;
    let mut rt = Runtime::app("wsgi", "web:app", &[("web.py", source)]).await;
    let e = echoed(&rt.ok(&root.v2()).await);
    assert_eq!(e, json!(["/run/shop", "/", "", "localhost", "80", "http"]));
}

#[tokio::test]
async fn the_path_query_headers_and_mount_reach_an_asgi_app() {
    if !have_python("the_path_query_headers_and_mount_reach_an_asgi_app") {
        return;
    }
    let mut rt = Runtime::app("asgi", "web:app", &[("web.py", ASGI_APP)]).await;
    let e = echoed(&rt.ok(&detailed().v2()).await);
    assert_eq!(e["type"], "http");
    assert_eq!(e["asgi"], json!({"version": "3.0", "spec_version": "2.4"}));
    assert_eq!(e["http_version"], "1.1");
    assert_eq!(e["method"], "GET");
    assert_eq!(e["scheme"], "https");
    assert_eq!(e["root_path"], "/run/shop");
    // The whole request path, decoded as UTF-8; raw_path as received.
    assert_eq!(e["path"], "/run/shop/echo/café/a/b");
    assert_eq!(e["raw_path"], "/run/shop/echo/caf%C3%A9/a%2Fb");
    assert_eq!(e["query_string"], "q=caf%C3%A9&tag=a&tag=b&empty=");
    assert_eq!(e["client"], json!(["192.0.2.7", 0]));
    assert_eq!(e["server"], json!(["shop.example", 8443]));
    // The event's headers in its order (sorted, as serde_json writes objects here), then the
    // cookies as one cookie header.
    assert_eq!(
        e["headers"],
        json!([
            ["bytes", "accept", "text/html,application/json"],
            ["bytes", "host", "shop.example:8443"],
            ["bytes", "user-agent", "curl/8.5.0"],
            ["bytes", "x-forwarded-proto", "https"],
            ["bytes", "cookie", "session=abc; theme=dark"],
        ])
    );
    assert_eq!(
        e["request"],
        json!({"type": "http.request", "body": "", "more_body": false})
    );
    assert_eq!(e["aws"], json!(["2.0", "str"]));

    // Payload format 1.0: each header value as given (multiValueHeaders).
    let e = echoed(&rt.ok(&detailed().v1()).await);
    assert_eq!(e["path"], "/run/shop/echo/café/a/b");
    assert_eq!(e["query_string"], "empty=&q=caf%C3%A9&tag=a&tag=b");
    assert_eq!(
        e["headers"],
        json!([
            ["bytes", "accept", "text/html"],
            ["bytes", "accept", "application/json"],
            ["bytes", "cookie", "session=abc; theme=dark"],
            ["bytes", "host", "shop.example:8443"],
            ["bytes", "user-agent", "curl/8.5.0"],
            ["bytes", "x-forwarded-proto", "https"],
        ])
    );
    assert_eq!(e["aws"], json!(["1.0", "str"]));
}

#[tokio::test]
async fn a_post_body_reaches_the_app_whole() {
    if !have_python("a_post_body_reaches_the_app_whole") {
        return;
    }
    let binary: Vec<u8> = vec![0, 159, 146, 150, 255];
    let encoded = b64(&binary);
    let text = Req {
        method: "post",
        path: "/echo",
        query: "",
        headers: vec![
            ("host", "localhost:8080"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-length", "11"),
        ],
        body: Some(("a=1&b=caf\u{e9}", false)),
    };
    let mut bin = text.clone();
    bin.headers[1].1 = "application/octet-stream";
    bin.body = Some((&encoded, true));
    for kind in ["wsgi", "asgi"] {
        let source = if kind == "wsgi" { WSGI_APP } else { ASGI_APP };
        let mut rt = Runtime::app(kind, "web:app", &[("web.py", source)]).await;
        for event in [text.v2(), text.v1()] {
            let e = echoed(&rt.ok(&event).await);
            // The body's UTF-8 bytes, shown as Latin-1 by the app.
            let sent = "a=1&b=caf\u{c3}\u{a9}";
            if kind == "wsgi" {
                assert_eq!(e["REQUEST_METHOD"], "POST");
                assert_eq!(e["CONTENT_TYPE"], "application/x-www-form-urlencoded");
                assert_eq!(e["CONTENT_LENGTH"], "11");
                assert_eq!(e["body"], sent);
            } else {
                assert_eq!(e["method"], "POST");
                assert_eq!(
                    e["request"],
                    json!({"type": "http.request", "body": sent, "more_body": false})
                );
            }
        }
        for event in [bin.v2(), bin.v1()] {
            let e = echoed(&rt.ok(&event).await);
            let got = if kind == "wsgi" {
                e["body"].as_str().unwrap()
            } else {
                e["request"]["body"].as_str().unwrap()
            };
            let bytes: Vec<u8> = got.chars().map(|c| c as u8).collect();
            assert_eq!(bytes, binary, "{kind}");
            if kind == "wsgi" {
                assert_eq!(e["CONTENT_LENGTH"], "5", "the body's own length");
            }
        }
    }
}

#[tokio::test]
async fn wsgi_write_generator_bodies_close_and_exc_info() {
    if !have_python("wsgi_write_generator_bodies_close_and_exc_info") {
        return;
    }
    let mut rt = Runtime::app("wsgi", "web:app", &[("web.py", WSGI_APP)]).await;
    // write() and the returned iterable, in order; the iterable's close() is called.
    let v = rt.ok(&Req::get("/written").v2()).await;
    assert_eq!(
        v,
        json!({
            "statusCode": 200,
            "headers": {"Content-Type": "text/plain; charset=utf-8"},
            "cookies": [],
            "body": "one two three",
            "isBase64Encoded": false,
        })
    );
    // A generator that calls start_response itself; the earlier close() is seen, and the
    // generator is closed in turn (its finally ran).
    let v = rt.ok(&Req::get("/generated").v2()).await;
    assert_eq!(v["statusCode"], 201);
    assert_eq!(v["headers"]["X-Closed"], "1");
    assert_eq!(v["body"], "made café");
    let v = rt.ok(&Req::get("/generated").v2()).await;
    assert_eq!(v["headers"]["X-Closed"], "2");

    // exc_info before any body: the new status and headers replace the first.
    let v = rt.ok(&Req::get("/replaced").v2()).await;
    assert_eq!(
        v,
        json!({
            "statusCode": 500,
            "headers": {"Content-Type": "text/plain"},
            "cookies": [],
            "body": "replaced",
            "isBase64Encoded": false,
        })
    );
    // exc_info after body bytes: start_response re-raises the app's exception.
    let (kind, message) = rt.err(&Req::get("/too-late").v2()).await;
    assert_eq!((kind.as_str(), message.as_str()), ("KeyError", "'late'"));
    // A second start_response without exc_info, and none at all, are errors.
    let (kind, message) = rt.err(&Req::get("/twice").v2()).await;
    assert_eq!(kind, "AssertionError");
    assert!(
        message.contains("a second time without exc_info"),
        "{message}"
    );
    let (kind, message) = rt.err(&Req::get("/silent").v2()).await;
    assert_eq!(kind, "RuntimeError");
    assert!(
        message.contains("web:app returned without calling start_response"),
        "{message}"
    );
    // And the app still serves.
    assert_eq!(rt.ok(&Req::get("/teapot").v2()).await["statusCode"], 418);
}

#[tokio::test]
async fn asgi_lifespan_starts_once_on_the_loop_calls_run_on() {
    if !have_python("asgi_lifespan_starts_once_on_the_loop_calls_run_on") {
        return;
    }
    let mut rt = Runtime::app("asgi", "web:app", &[("web.py", ASGI_APP)]).await;
    let mut loops = Vec::new();
    for _ in 0..3 {
        let e = echoed(&rt.ok(&Req::get("/echo").v2()).await);
        let starts = e["starts"].as_array().unwrap();
        assert_eq!(starts.len(), 1, "{e}");
        assert_eq!(starts[0][0], "3.0");
        assert_eq!(starts[0][1], e["loop"], "startup ran on the calls' loop");
        assert_eq!(
            e["state"],
            json!({"pool": "ready"}),
            "a copy of the lifespan state"
        );
        loops.push(e["loop"].clone());
    }
    assert!(loops.windows(2).all(|w| w[0] == w[1]), "{loops:?}");
}

#[tokio::test]
async fn asgi_receive_gives_the_request_then_disconnect_once_the_response_is_complete() {
    if !have_python("asgi_receive_gives_the_request_then_disconnect_once_the_response_is_complete")
    {
        return;
    }
    let mut rt = Runtime::app("asgi", "web:app", &[("web.py", ASGI_APP)]).await;
    let v = rt.ok(&Req::get("/disconnect").v2()).await;
    assert_eq!(v["body"], "bye");
    assert_eq!(v["headers"], json!({"content-type": "text/plain"}));
    let e = echoed(&rt.ok(&Req::get("/echo").v2()).await);
    assert_eq!(
        e["disconnects"],
        json!([{"early": false, "then": "http.disconnect"}])
    );
    // No response at all is an error; so is an exception before the response is complete.
    let (kind, message) = rt.err(&Req::get("/silent").v2()).await;
    assert_eq!(kind, "RuntimeError");
    assert!(
        message.contains("web:app returned without sending a response"),
        "{message}"
    );
    let (kind, message) = rt.err(&Req::get("/broken").v2()).await;
    assert_eq!(
        (kind.as_str(), message.as_str()),
        ("LookupError", "broken mid-response")
    );
    // An exception after a complete response (Starlette's 500, then re-raised): the response,
    // and the exception in the log.
    let v = rt.ok(&Req::get("/after").v2()).await;
    assert_eq!(
        (&v["statusCode"], &v["body"]),
        (&json!(500), &json!("Internal Server Error"))
    );
    let log = rt.stderr();
    assert!(
        log.contains("RuntimeError: raised after the response"),
        "{log}"
    );
}

#[tokio::test]
async fn asgi_lifespan_startup_failure_is_every_calls_answer() {
    if !have_python("asgi_lifespan_startup_failure_is_every_calls_answer") {
        return;
    }
    let source = r#"async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database at db:5432"})
        return
    raise AssertionError("an app whose startup failed is never called")
"#;
    let mut rt = Runtime::app("asgi", "main:app", &[("main.py", source)]).await;
    for _ in 0..2 {
        let (kind, message) = rt.err(&Req::get("/").v2()).await;
        assert_eq!(kind, "RuntimeError");
        assert_eq!(
            message,
            "entry main:app: ASGI lifespan startup failed: no database at db:5432"
        );
    }
}

#[tokio::test]
async fn an_asgi_app_without_lifespan_support_is_served_without_it() {
    if !have_python("an_asgi_app_without_lifespan_support_is_served_without_it") {
        return;
    }
    let source = r#"async def app(scope, receive, send):
    if scope["type"] != "http":
        raise ValueError("this app serves http, not %s" % scope["type"])
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [[b"content-type", b"text/plain"]]})
    await send({"type": "http.response.body", "body": b"state" if "state" in scope else b"no state"})
"#;
    let mut rt = Runtime::app("asgi", "main:app", &[("main.py", source)]).await;
    for _ in 0..2 {
        let v = rt.ok(&Req::get("/").v2()).await;
        assert_eq!(
            (&v["statusCode"], &v["body"]),
            (&json!(200), &json!("no state"))
        );
    }
    let log = rt.stderr();
    assert!(
        log.contains("entry main:app: the app does not support the ASGI lifespan protocol (ValueError: this app serves http, not lifespan)"),
        "{log}"
    );
}

#[tokio::test]
async fn an_event_that_is_not_http_is_a_clear_error() {
    if !have_python("an_event_that_is_not_http_is_a_clear_error") {
        return;
    }
    for (kind, article, source) in [("wsgi", "a WSGI", WSGI_APP), ("asgi", "an ASGI", ASGI_APP)] {
        let mut rt = Runtime::app(kind, "web:app", &[("web.py", source)]).await;
        for event in [json!({}), json!({"n": 1}), json!([1, 2])] {
            let (ty, message) = rt.err(&event).await;
            assert_eq!(ty, "TypeError", "{message}");
            assert!(
                message.starts_with(&format!(
                    "entry web:app is {article} app serving HTTP requests at /run/shop: it takes API Gateway HTTP events"
                )),
                "{message}"
            );
        }
        // A 2.0 event without its requestContext.http is not one either.
        let mut event = Req::get("/echo").v2();
        event["requestContext"]
            .as_object_mut()
            .unwrap()
            .remove("http");
        assert_eq!(rt.err(&event).await.0, "TypeError");
        // And the app serves on.
        assert_eq!(
            echoed(&rt.ok(&Req::get("/echo").v2()).await)["aws"][0],
            "2.0"
        );
    }
}

#[tokio::test]
async fn entries_are_module_colon_attr_or_module_dot_attr() {
    if !have_python("entries_are_module_colon_attr_or_module_dot_attr") {
        return;
    }
    let files = [("pkg/__init__.py", ""), ("pkg/web.py", WSGI_APP)];
    for entry in ["pkg.web:app", "pkg.web.app", "pkg.web:Holder.app"] {
        let mut rt = Runtime::app("wsgi", entry, &files).await;
        let v = rt.ok(&Req::get("/teapot").v2()).await;
        assert_eq!(v["statusCode"], 418, "{entry}");
    }
    let asgi = [("pkg/__init__.py", ""), ("pkg/main.py", ASGI_APP)];
    for entry in ["pkg.main:app", "pkg.main.app"] {
        let mut rt = Runtime::app("asgi", entry, &asgi).await;
        let v = rt.ok(&Req::get("/teapot").v2()).await;
        assert_eq!(v["statusCode"], 418, "{entry}");
    }
    // Handler entries take module:attr too, with or without a context.
    let source = "import sys\n\ndef handler(event):\n    return {'n': event['n'] + 1, 'http': 'runtime_http' in sys.modules}\n\ndef with_context(event, context):\n    return type(context).__name__\n";
    let mut rt = Runtime::start(
        &[("lambda_func.py", source)],
        &[("_HANDLER", "lambda_func:handler")],
    )
    .await;
    assert_eq!(
        rt.ok(&json!({"n": 1})).await,
        json!({"n": 2, "http": false})
    );
    let mut rt = Runtime::start(
        &[("lambda_func.py", source)],
        &[
            ("_HANDLER", "lambda_func:with_context"),
            ("LAMBDA_ENTRY_TYPE", "handler"),
        ],
    )
    .await;
    assert_eq!(rt.ok(&json!({})).await, json!("LambdaContext"));
    // The default entry imports no HTTP module (nor anything else it does not need).
    let mut rt = Runtime::start(&[("lambda_func.py", source)], &[]).await;
    assert_eq!(
        rt.ok(&json!({"n": 1})).await,
        json!({"n": 2, "http": false})
    );
}

#[tokio::test]
async fn an_http_entry_that_cannot_load_names_itself_in_every_answer() {
    if !have_python("an_http_entry_that_cannot_load_names_itself_in_every_answer") {
        return;
    }
    let files = [("web.py", WSGI_APP)];
    let cases = [
        (
            "wsgi",
            "nope:app",
            "ModuleNotFoundError",
            "entry nope:app: no module nope",
        ),
        (
            "asgi",
            "nope.app",
            "ModuleNotFoundError",
            "entry nope.app: no module nope",
        ),
        (
            "wsgi",
            "web:missing",
            "AttributeError",
            "defines no callable missing (entry web:missing)",
        ),
        (
            "asgi",
            "web:Holder.none",
            "AttributeError",
            "defines no callable Holder.none (entry web:Holder.none)",
        ),
        (
            "wsgi",
            "web:NOT_CALLABLE",
            "AttributeError",
            "defines no callable NOT_CALLABLE (entry web:NOT_CALLABLE)",
        ),
        (
            "wsgi",
            "web:",
            "ValueError",
            "entry 'web:' is not module.attr or module:attr",
        ),
        (
            "grpc",
            "web:app",
            "ValueError",
            "entry web:app: LAMBDA_ENTRY_TYPE is 'grpc', not handler, wsgi or asgi",
        ),
    ];
    for (kind, entry, ty, needle) in cases {
        let mut rt = Runtime::app(kind, entry, &files).await;
        for _ in 0..2 {
            let (got, message) = rt.err(&Req::get("/teapot").v2()).await;
            assert_eq!(got, ty, "{kind} {entry}: {message}");
            assert!(message.contains(needle), "{kind} {entry}: {message}");
        }
    }
}
