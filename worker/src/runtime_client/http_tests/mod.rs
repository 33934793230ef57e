//! Cross-language tests of HTTP entries (`LAMBDA_ENTRY_TYPE` `wsgi` and `asgi`, served by
//! `cluster-template/runtime/runtime_http.py`), as `wire_tests` tests the other entries: the
//! host's `python3` runs the real `runtime.py` on a listening socket and the worker's client
//! calls it, with API Gateway HTTP events (payload formats 2.0 and 1.0) built here by hand.
//! The apps are small PEP 3333 and ASGI 3 apps written below; no framework is needed.

mod support;

use serde_json::{json, Value};

use support::*;

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
    let mut rt = Runtime::http_start(
        &[("lambda_func.py", source)],
        &[("_HANDLER", "lambda_func:handler")],
    )
    .await;
    assert_eq!(
        rt.ok(&json!({"n": 1})).await,
        json!({"n": 2, "http": false})
    );
    let mut rt = Runtime::http_start(
        &[("lambda_func.py", source)],
        &[
            ("_HANDLER", "lambda_func:with_context"),
            ("LAMBDA_ENTRY_TYPE", "handler"),
        ],
    )
    .await;
    assert_eq!(rt.ok(&json!({})).await, json!("LambdaContext"));
    // The default entry imports no HTTP module (nor anything else it does not need).
    let mut rt = Runtime::http_start(&[("lambda_func.py", source)], &[]).await;
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
