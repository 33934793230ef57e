//! How a function is called inside its sandbox (root only): entries (`handler(event)`,
//! `handler(event, context)`, `async def`, Luna's `lambda_main.main`, a dotted module), the
//! context, the environment, `PYTHONPATH` and layers; each on both start paths, a fresh
//! interpreter and a fork from the import cache. Functions report what they see from inside.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::{can_run, TestCluster};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REGION: &str = "eu-west-3";
const ACCOUNT: &str = "123456789012";

/// An AWS-style entry that reads its context, an environment variable set at import time, and
/// some of AWS's variables.
const AWS_APP: &str = r#"import os

GREETING = os.environ["GREETING"]

def handler(event, context):
    return {
        "greeting": GREETING,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "invoked_function_arn": context.invoked_function_arn,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "env": {k: os.environ.get(k) for k in (
            "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_REGION",
            "AWS_DEFAULT_REGION", "_HANDLER", "LAMBDA_TASK_ROOT")},
    }
"#;

const ASYNC_HANDLER: &str = r#"import asyncio

LOOPS = []

async def handler(event):
    await asyncio.sleep(0.001)
    LOOPS.append(id(asyncio.get_running_loop()))
    return {"calls": len(LOOPS), "loops": len(set(LOOPS))}
"#;

const LUNA_MAIN: &str = r#"from luna_lambda_tools import StandaloneLambdaRequest

async def main(request: StandaloneLambdaRequest) -> dict:
    return {"result": request.json["data"]}
"#;

/// Uses the shared layer and reports where it came from and whether its mount is read-only.
const LAYER_USER: &str = r#"import sys
import common_util

def handler(event):
    try:
        open("/opt/common/python/new-file", "w").close()
        writable = True
    except OSError:
        writable = False
    return {"util": common_util.NAME, "file": common_util.__file__, "writable": writable,
            "path": [p for p in sys.path if p.startswith("/opt")]}
"#;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// One POST; returns the status, the `x-amzn-RequestId` header (if any) and the JSON body.
async fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, Option<String>, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let request_id = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("x-amzn-requestid")
            .then(|| value.trim().to_owned())
    });
    let value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    (status, request_id, value)
}

/// One call of the function `name`.
async fn call(addr: SocketAddr, name: &str, body: &str) -> (u16, Option<String>, Value) {
    post(addr, &format!("/runLambda/{name}"), body).await
}

/// Every case, on the start path `patch` selects; `forked` says which one that is.
async fn entries(patch: &str, forked: bool) {
    let mut c = TestCluster::start(patch).await;
    let (reg, addr) = (c.registry(), c.addr);

    // handler(event, context), with its environment read at import time.
    write(&reg, "aws-ctx/app.py", AWS_APP);
    write(
        &reg,
        "aws-ctx/lambda.json",
        r#"{"entry": "app.handler", "timeout_s": 5, "memory_mb": 320,
            "environment": {"GREETING": "bonjour"}}"#,
    );
    let (s1, id1, first) = call(addr, "aws-ctx", "{}").await;
    let (s2, id2, second) = call(addr, "aws-ctx", "{}").await;
    assert_eq!((s1, s2), (200, 200), "{first} {second}");
    assert_eq!(first["greeting"], "bonjour");
    assert_eq!(first["function_name"], "aws-ctx");
    assert_eq!(first["function_version"], "$LATEST");
    assert_eq!(first["memory_limit_in_mb"], "320");
    assert_eq!(
        first["invoked_function_arn"],
        format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:aws-ctx")
    );
    assert_eq!(first["log_group_name"], "/aws/lambda/aws-ctx");
    assert!(
        first["log_stream_name"]
            .as_str()
            .is_some_and(|s| s.contains("/[$LATEST]")),
        "{first}"
    );
    // Each call its own request id: the one the answer's header names.
    let (a, b) = (&first["aws_request_id"], &second["aws_request_id"]);
    assert_ne!(a, b);
    assert_eq!(id1.as_deref(), a.as_str(), "{first}");
    assert_eq!(id2.as_deref(), b.as_str(), "{second}");
    for answer in [&first, &second] {
        let left = answer["remaining_ms"].as_i64().unwrap();
        assert!(left > 0 && left <= 5000, "{answer}");
    }
    assert_eq!(
        first["env"],
        json!({
            "AWS_LAMBDA_FUNCTION_NAME": "aws-ctx",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "320",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "_HANDLER": "app.handler",
            "LAMBDA_TASK_ROOT": "/handler",
        })
    );

    // async def handler(event): awaited, on one loop kept across calls.
    write(&reg, "async-state/lambda_func.py", ASYNC_HANDLER);
    for n in 1..=2 {
        let (status, _, v) = call(addr, "async-state", "{}").await;
        assert_eq!((status, v), (200, json!({"calls": n, "loops": 1})));
    }

    // Luna: lambda_main.py alone, async def main(request).
    write(&reg, "luna-echo/lambda_main.py", LUNA_MAIN);
    let (status, _, v) = call(addr, "luna-echo", r#"{"data": {"x": [1, 2]}}"#).await;
    assert_eq!((status, v), (200, json!({"result": {"x": [1, 2]}})));

    // A dotted entry.
    write(&reg, "dotted/pkg/__init__.py", "");
    write(
        &reg,
        "dotted/pkg/app.py",
        "def run(event, context):\n    return {'module': __name__, 'n': event['n'] + 1}\n",
    );
    write(&reg, "dotted/lambda.json", r#"{"entry": "pkg.app.run"}"#);
    let (status, _, v) = call(addr, "dotted", r#"{"n": 41}"#).await;
    assert_eq!((status, v), (200, json!({"module": "pkg.app", "n": 42})));

    // One layer, two functions.
    write(
        &reg,
        ".store/layers/common/1/python/common_util.py",
        "NAME = 'common v1'\n",
    );
    for name in ["layer-a", "layer-b"] {
        write(&reg, &format!("{name}/lambda_func.py"), LAYER_USER);
        write(
            &reg,
            &format!("{name}/lambda.json"),
            r#"{"layers": ["common"]}"#,
        );
        let (status, _, v) = call(addr, name, "{}").await;
        assert_eq!(status, 200, "{name}: {v}");
        assert_eq!(
            v,
            json!({"util": "common v1", "file": "/opt/common/python/common_util.py",
                   "writable": false, "path": ["/opt/common/python"]}),
            "{name}"
        );
    }

    // PYTHONPATH in the environment reaches the entry's imports.
    write(
        &reg,
        "vendored/vendor/helper_mod.py",
        "VALUE = 'vendored'\n",
    );
    write(
        &reg,
        "vendored/lambda_func.py",
        "import helper_mod\ndef handler(event):\n    return helper_mod.VALUE\n",
    );
    write(
        &reg,
        "vendored/lambda.json",
        r#"{"environment": {"PYTHONPATH": "/handler/vendor"}}"#,
    );
    let (status, _, v) = call(addr, "vendored", "{}").await;
    assert_eq!((status, v), (200, json!("vendored")));

    // A missing entry module: a handler error naming it and where it was looked for.
    write(
        &reg,
        "no-module/lambda.json",
        r#"{"entry": "nothere.handler"}"#,
    );
    let (status, _, v) = call(addr, "no-module", "{}").await;
    assert_eq!(status, 500, "{v}");
    assert_eq!(v["type"], "ModuleNotFoundError", "{v}");
    let exception = v["exception"].as_str().unwrap();
    assert!(
        exception.contains("entry nothere.handler: no module nothere")
            && exception.contains("/handler/nothere.py"),
        "{v}"
    );

    // A missing layer: 400 naming the key and the layer.
    write(
        &reg,
        "no-layer/lambda_func.py",
        "def handler(event):\n    return 1\n",
    );
    write(&reg, "no-layer/lambda.json", r#"{"layers": ["absent:3"]}"#);
    let (status, _, v) = call(addr, "no-layer", "{}").await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["key"], "layers", "{v}");
    assert!(v["message"].as_str().unwrap().contains("absent:3"), "{v}");

    // The path these sandboxes took.
    let stats = c.stats().await;
    for name in [
        "aws-ctx",
        "async-state",
        "luna-echo",
        "dotted",
        "layer-a",
        "layer-b",
        "vendored",
    ] {
        let zygote_starts = stats["lambdas"][name]["zygote_starts"].as_u64().unwrap();
        assert_eq!(zygote_starts > 0, forked, "{name}: {stats}");
    }
    c.shutdown().await;
}

fn patch(import_cache: bool) -> String {
    format!(
        r#"{{"import_cache": {import_cache}, "aws_region": "{REGION}", "aws_account_id": "{ACCOUNT}"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_in_fresh_sandboxes() {
    if !can_run("entries_in_fresh_sandboxes") {
        return;
    }
    entries(&patch(false), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_in_forked_sandboxes() {
    if !can_run("entries_in_forked_sandboxes") {
        return;
    }
    entries(&patch(true), true).await;
}
