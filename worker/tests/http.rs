//! HTTP functions end to end (root): any method on `/run/<name>/<path>`, API Gateway events
//! (payload formats 2.0 and 1.0) and their answers, a Flask (WSGI) and a Starlette (ASGI) app
//! installed from PyPI, an HSDS-shaped function (seed 003) and seed 004's MessageWall.

mod common;

use std::path::Path;

use common::{can_run, request, TestCluster};
use serde_json::{json, Value};

/// Copies `worker/tests/http_apps/<app>` into the registry as function `name`.
fn add_app(c: &TestCluster, app: &str, name: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/http_apps")
        .join(app);
    let dst = c.registry().join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
}

/// What both web apps must do the same way: status 418 with a header, a cookie and a body;
/// a POSTed body back; path and query; a binary body both ways; a method they do not take.
async fn check_web_app(c: &TestCluster, name: &str) {
    let tea = request(c.addr, "GET", &format!("/run/{name}/tea"), &[], b"").await;
    assert_eq!(tea.status, 418, "{name}: {}", tea.text());
    assert_eq!(tea.header("x-tea"), Some("earl grey"), "{name}");
    assert!(
        tea.all("set-cookie")
            .iter()
            .any(|c| c.starts_with("kettle=on")),
        "{name}: {:?}",
        tea.headers
    );
    assert_eq!(tea.text(), "short and stout", "{name}");
    assert!(tea.header("x-amzn-requestid").is_some(), "{name}");

    let posted = request(
        c.addr,
        "POST",
        &format!("/run/{name}/tea"),
        &[("Content-Type", "text/plain")],
        b"milk first",
    )
    .await;
    assert_eq!((posted.status, posted.text().as_str()), (418, "milk first"));

    let echo = request(
        c.addr,
        "GET",
        &format!("/run/{name}/echo/a/b%20c?x=1&x=2&y=%2F"),
        &[("Cookie", "a=apple; b=banana"), ("User-Agent", "lw-test/1")],
        b"",
    )
    .await;
    assert_eq!(echo.status, 200, "{name}: {}", echo.text());
    let e = echo.json();
    assert_eq!(e["method"], "GET", "{name}: {e}");
    assert_eq!(e["rest"], "a/b c", "{name}: {e}");
    assert_eq!(e["cookie"], "apple", "{name}: {e}");
    assert_eq!(e["path"], format!("/run/{name}/echo/a/b c"), "{name}: {e}");
    let query = if name.contains("flask") {
        &e["args"]
    } else {
        &e["query"]
    };
    assert_eq!(*query, json!({"x": ["1", "2"], "y": ["/"]}), "{name}: {e}");

    let binary = request(c.addr, "GET", &format!("/run/{name}/binary"), &[], b"").await;
    assert_eq!(binary.status, 200, "{name}: {}", binary.text());
    assert_eq!(binary.body, (0..=255u8).collect::<Vec<_>>(), "{name}");
    assert_eq!(
        binary.header("content-type"),
        Some("application/octet-stream")
    );
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let back = request(
        c.addr,
        "POST",
        &format!("/run/{name}/binary"),
        &[("Content-Type", "application/octet-stream")],
        &blob,
    )
    .await;
    assert_eq!(back.status, 200, "{name}: {}", back.text());
    assert!(
        back.body == blob,
        "{name}: the binary body changed on its way"
    );

    let refused = request(c.addr, "DELETE", &format!("/run/{name}/tea"), &[], b"").await;
    assert_eq!(refused.status, 405, "{name}: {}", refused.text());
    assert_eq!(refused.header("allow"), Some("GET, POST, HEAD"), "{name}");
    assert_eq!(refused.json()["error"], "method not allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_and_starlette_apps_serve_http() {
    if !can_run("flask_and_starlette_apps_serve_http") {
        return;
    }
    let mut c = TestCluster::start(r#"{"timeout_s": 120}"#).await;
    add_app(&c, "flask", "web-flask");
    add_app(&c, "starlette", "web-asgi");
    check_web_app(&c, "web-flask").await;
    let root = request(c.addr, "GET", "/run/web-flask", &[], b"").await;
    assert_eq!((root.status, root.text().as_str()), (200, "flask root"));
    let flask = request(c.addr, "GET", "/run/web-flask/echo/x", &[], b"")
        .await
        .json();
    assert_eq!(flask["script_root"], "/run/web-flask", "{flask}");
    assert_eq!(flask["agent"], Value::Null, "{flask}");
    assert_eq!(flask["remote"], "127.0.0.1", "{flask}");
    assert_eq!(
        flask["url"], "http://localhost/run/web-flask/echo/x",
        "{flask}"
    );

    check_web_app(&c, "web-asgi").await;
    let asgi = request(c.addr, "GET", "/run/web-asgi/echo/x", &[], b"")
        .await
        .json();
    assert_eq!(asgi["root_path"], "/run/web-asgi", "{asgi}");
    // The lifespan's startup ran once for the sandbox's many calls.
    assert_eq!(asgi["startups"], 1, "{asgi}");
    // A plain call of an app is refused with the reason.
    let (status, v) = c.call("web-asgi", "{}").await;
    assert_eq!(status, 500, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/run/web-asgi"),
        "{v}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsds_shaped_function_and_the_message_wall() {
    if !can_run("hsds_shaped_function_and_the_message_wall") {
        return;
    }
    let mut c = TestCluster::start("{}").await;
    add_app(&c, "hsds", "hslambda");
    add_app(&c, "messagewall", "MessageWall");

    // HSDS through /run: statusCode, headers, a JSON body; the binary values base64-decoded.
    let about = request(
        c.addr,
        "GET",
        "/run/hslambda/about?domain=%2Fnrel%2Fwtk-us.h5",
        &[],
        b"",
    )
    .await;
    assert_eq!(about.status, 200, "{}", about.text());
    assert_eq!(about.header("content-type"), Some("application/json"));
    assert_eq!(
        about.json(),
        json!({"state": "READY", "method": "GET", "params": {"domain": "/nrel/wtk-us.h5"}})
    );
    let values = request(
        c.addr,
        "GET",
        "/run/hslambda/datasets/d-1/value?select=%5B0%3A100%5D",
        &[("Accept", "application/octet-stream")],
        b"",
    )
    .await;
    assert_eq!(values.status, 200, "{}", values.text());
    let expected: Vec<u8> = (0..4000u32).map(|i| (i * 7 % 256) as u8).collect();
    assert!(values.body == expected, "the values changed on their way");
    assert_eq!(values.header("content-length"), Some("4000"));
    let missing = request(c.addr, "GET", "/run/hslambda/nope", &[], b"").await;
    assert_eq!(missing.status, 404);

    // HSDS invoked directly with its own packaging, as h5pyd does: the seed's answer.
    let event = json!({
        "method": "GET",
        "path": "/datasets/d-d29fda32-85f3-11e7-bf89-0242ac110008/value",
        "headers": {"accept": "application/octet-stream"},
        "params": {"domain": "/nrel/wtk-us.h5", "select": "[0:100,620,1401]", "bucket": "nrel-pds-hsds"},
    });
    let (status, direct) = c.call("hslambda", &event.to_string()).await;
    assert_eq!(status, 200, "{direct}");
    assert_eq!(direct["statusCode"], 200);
    assert_eq!(direct["isBase64Encoded"], true);
    assert_eq!(direct["body"].as_str().map(str::len), Some(8000));
    let head: Value = serde_json::from_str(direct["headers"].as_str().unwrap()).unwrap();
    assert_eq!(head["Content-Type"], "application/octet-stream");

    // Seed 004's MessageWall, as its curl session shows.
    let wall = "/run/MessageWall";
    let text = [("Content-Type", "text/plain")];
    let steps: [(&str, &[u8], &str); 6] = [
        ("GET", b"", "No message yet."),
        ("POST", b"Hello from EFS!", "Hello from EFS!\n"),
        (
            "POST",
            b"Hello again :)",
            "Hello from EFS!\nHello again :)\n",
        ),
        ("GET", b"", "Hello from EFS!\nHello again :)\n"),
        ("DELETE", b"", "Messages deleted."),
        ("GET", b"", "No message yet."),
    ];
    for (method, body, want) in steps {
        let a = request(c.addr, method, wall, &text, body).await;
        assert_eq!((a.status, a.text().as_str()), (200, want), "{method}");
    }
    let other = request(c.addr, "PUT", wall, &[], b"").await;
    assert_eq!(other.text(), "Method unsupported.");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_answers_and_refusals() {
    if !can_run("events_answers_and_refusals") {
        return;
    }
    let mut c = TestCluster::start(r#"{"max_body_bytes": 1048576}"#).await;
    add_app(&c, "v1", "rest");
    // The event as the handler sees it, returned whole.
    c.add_handler("seen", "def handler(event):\n    return event\n");
    c.add_handler(
        "answers",
        r#"import json
def handler(event):
    kind = event["rawPath"].strip("/")
    if kind == "nobody":
        return {"statusCode": 204}
    if kind == "object-body":
        return {"statusCode": 200, "body": {"a": 1}}
    if kind == "bad-status":
        return {"statusCode": 1000}
    if kind == "raise":
        raise ValueError("no such answer")
    if kind == "list":
        return [1, 2]
    return {"statusCode": 200, "headers": {"content-type": "text/html", "x-n": 3}, "cookies": ["s=1; HttpOnly"], "body": "<p>hi</p>"}
"#,
    );
    let seen = request(
        c.addr,
        "PATCH",
        "/run/seen/a/b?k=v",
        &[
            ("X-Many", "1"),
            ("X-Many", "2"),
            ("Content-Type", "image/png"),
        ],
        &[0x89, b'P', b'N', b'G'],
    )
    .await;
    assert_eq!(seen.status, 200, "{}", seen.text());
    let e = seen.json();
    assert_eq!(e["version"], "2.0");
    assert_eq!(e["rawPath"], "/a/b");
    assert_eq!(e["requestContext"]["http"]["method"], "PATCH");
    assert_eq!(
        e["requestContext"]["requestId"],
        seen.header("x-amzn-requestid").unwrap()
    );
    assert_eq!(e["headers"]["x-many"], "1,2");
    assert_eq!(e["queryStringParameters"], json!({"k": "v"}));
    assert_eq!(e["isBase64Encoded"], true);
    assert_eq!(e["body"], "iVBORw==");
    // A caller's request id is the event's.
    let given = request(
        c.addr,
        "GET",
        "/run/seen",
        &[("X-Request-Id", "trace-42")],
        b"",
    )
    .await;
    assert_eq!(given.json()["requestContext"]["requestId"], "trace-42");

    let rest = request(
        c.addr,
        "POST",
        "/run/rest/x?q=1&q=2",
        &[("X-Many", "a"), ("X-Many", "b")],
        b"plain",
    )
    .await;
    assert_eq!(rest.status, 201, "{}", rest.text());
    assert_eq!(rest.all("set-cookie"), ["a=1", "b=2"]);
    assert_eq!(rest.header("x-seen"), Some("yes"));
    assert_eq!(
        rest.json(),
        json!({"version": "1.0", "httpMethod": "POST", "path": "/x", "query": {"q": "2"},
               "multiQuery": {"q": ["1", "2"]}, "multi": ["a", "b"], "body": "plain", "base64": false})
    );

    let page = request(c.addr, "GET", "/run/answers/page", &[], b"").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html"));
    assert_eq!(page.header("x-n"), Some("3"));
    assert_eq!(page.all("set-cookie"), ["s=1; HttpOnly"]);
    assert_eq!(page.text(), "<p>hi</p>");
    let empty = request(c.addr, "GET", "/run/answers/nobody", &[], b"").await;
    assert_eq!((empty.status, empty.body.len()), (204, 0));
    let list = request(c.addr, "GET", "/run/answers/list", &[], b"").await;
    assert_eq!((list.status, list.text().as_str()), (200, "[1, 2]"));
    assert_eq!(list.header("content-type"), Some("application/json"));
    for (path, needle) in [
        ("object-body", "body must be a string"),
        ("bad-status", "statusCode"),
    ] {
        let bad = request(c.addr, "GET", &format!("/run/answers/{path}"), &[], b"").await;
        assert_eq!(bad.status, 502, "{path}: {}", bad.text());
        let v = bad.json();
        assert_eq!(v["error"], "invalid HTTP answer", "{v}");
        assert_eq!(v["lambda"], "answers", "{v}");
        assert!(v["message"].as_str().unwrap().contains(needle), "{v}");
    }
    let raised = request(c.addr, "GET", "/run/answers/raise", &[], b"").await;
    assert_eq!(raised.status, 500, "{}", raised.text());
    assert!(raised.text().contains("no such answer"));

    // Refusals: unknown function, bad name, a body over the limit; the worker goes on.
    assert_eq!(
        request(c.addr, "GET", "/run/nothing-here/x", &[], b"")
            .await
            .status,
        404
    );
    assert_eq!(
        request(c.addr, "GET", "/run/..", &[], b"").await.status,
        400
    );
    let big = vec![b'x'; 1024 * 1024 + 1];
    let over = request(c.addr, "POST", "/run/seen", &[], &big).await;
    assert_eq!(over.status, 413, "{}", over.text());
    let ok = request(c.addr, "GET", "/run/seen", &[], b"").await;
    assert_eq!(ok.status, 200);
    c.shutdown().await;
}
