//! Invocation like AWS Lambda, end to end (root): the Invoke API driven by the real boto3 and
//! aws-cli, `/runLambda/<name>?async=1`, invocation records, request ids, and the retry policy
//! of asynchronous events.

mod common;

use std::time::{Duration, Instant};

use common::clients::{aws_cli, client_venv, run_python};
use common::{can_run, http, TestCluster};
use serde_json::{json, Value};

const KEY: &str = "AKIDLAMBDAWORKER02";
const SECRET: &str = "invoke-secret-key-0123456789";

/// One HTTP/1.1 request with extra headers; status, headers (lower-case names) and body.
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    let a = common::request(addr, method, path, headers, body).await;
    let text = a.text();
    (a.status, a.headers, text)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Polls `GET /invocations/<id>` until its status is `status`.
async fn wait_status(c: &TestCluster, id: &str, status: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (code, text) = http(c.addr, "GET", &format!("/invocations/{id}"), b"").await;
        assert_eq!(code, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["status"] == status {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "invocation {id} is not {status} after {limit:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn queue_async(c: &TestCluster, name: &str, event: &str) -> String {
    let (code, headers, body) = request(
        c.addr,
        "POST",
        &format!("/runLambda/{name}?async=1"),
        &[],
        event.as_bytes(),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let id = v["invocation_id"].as_str().unwrap().to_owned();
    assert_eq!(v["status"], "queued");
    assert_eq!(
        header(&headers, "location"),
        Some(format!("/invocations/{id}").as_str())
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boto3_and_aws_cli_invoke_every_way() {
    if !can_run("boto3_and_aws_cli_invoke_every_way") {
        return;
    }
    let venv = tokio::task::spawn_blocking(client_venv).await.unwrap();
    // Credentials make the worker verify signatures; one call of a lambda at a time and no
    // queue make the throttle reachable; retries come quickly.
    let tmp = tempfile::tempdir().unwrap();
    let creds_file = common::credentials_file(tmp.path(), KEY, SECRET);
    let patch = json!({
        "credentials_file": creds_file,
        "max_sandboxes_per_lambda": 1,
        "max_queue_per_lambda": 0,
        "async_retry_delay_ms": 100,
    });
    let mut c = TestCluster::start(&patch.to_string()).await;
    let url = format!("http://{}", c.addr);
    let args = vec![url.clone(), KEY.into(), SECRET.into()];
    tokio::task::spawn_blocking(move || run_python(&venv, "boto3_invoke.py", &args))
        .await
        .unwrap();

    // aws-cli's `lambda invoke` (version 1: the payload as text) writes the answer to a file
    // and prints the status.
    let venv = tokio::task::spawn_blocking(client_venv).await.unwrap();
    let out_file = tmp.path().join("out.json");
    let printed = aws_cli(
        &venv,
        &url,
        (KEY, SECRET),
        &[
            "lambda".as_ref(),
            "invoke".as_ref(),
            "--function-name".as_ref(),
            "echo".as_ref(),
            "--payload".as_ref(),
            r#"{"n": 5}"#.as_ref(),
            "--log-type".as_ref(),
            "Tail".as_ref(),
            out_file.as_os_str(),
        ],
    );
    assert_eq!(printed["StatusCode"], 200, "{printed}");
    assert_eq!(printed["ExecutedVersion"], "$LATEST", "{printed}");
    assert!(printed["LogResult"].is_string(), "{printed}");
    let answer: Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(answer["echo"], json!({"n": 5}), "{answer}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_lambda_async_records_and_request_ids() {
    if !can_run("run_lambda_async_records_and_request_ids") {
        return;
    }
    let mut c = TestCluster::start(r#"{"async_retry_delay_ms": 100}"#).await;
    c.add_handler(
        "double",
        "def handler(event):\n    return {'twice': event['n'] * 2}\n",
    );

    // The seed's synchronous answer is unchanged, and carries the request id in three headers;
    // a caller's own id is used.
    let (code, headers, body) = request(
        c.addr,
        "POST",
        "/runLambda/double",
        &[("X-Request-Id", "caller-id-1")],
        br#"{"n": 2}"#,
    )
    .await;
    assert_eq!((code, body.trim()), (200, r#"{"twice": 4}"#));
    for h in ["x-amzn-requestid", "x-amz-request-id", "x-request-id"] {
        assert_eq!(header(&headers, h), Some("caller-id-1"), "{h}: {headers:?}");
    }
    // Error answers carry it too; a bad one is refused.
    let (code, headers, _) = request(c.addr, "POST", "/runLambda/missing", &[], b"{}").await;
    assert_eq!(code, 404);
    assert!(header(&headers, "x-request-id").is_some(), "{headers:?}");
    let (code, _, body) = request(
        c.addr,
        "POST",
        "/runLambda/double",
        &[("X-Request-Id", "no spaces allowed")],
        b"{}",
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid request id"), "{body}");

    // ?async=1: 202 with the id, then the record.
    let id = queue_async(&c, "double", r#"{"n": 21}"#).await;
    let rec = wait_status(&c, &id, "succeeded", Duration::from_secs(60)).await;
    assert_eq!(rec["result"], json!({"twice": 42}), "{rec}");
    assert_eq!(rec["attempts"], 1, "{rec}");
    assert_eq!(rec["function"], "double");
    assert_eq!(rec["payload"], json!({"n": 21}));
    assert!(
        rec["finished"].is_string() && rec["created"].is_string(),
        "{rec}"
    );

    // Listing, filters and their errors.
    let (code, text) = http(c.addr, "GET", "/invocations?function=double", b"").await;
    assert_eq!(code, 200, "{text}");
    let list: Value = serde_json::from_str(&text).unwrap();
    assert!(
        list["invocations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str()),
        "{list}"
    );
    for (path, code) in [
        ("/invocations?status=weird", 400),
        ("/invocations?limit=0", 400),
        ("/invocations?function=..", 400),
        ("/invocations?other=1", 400),
        ("/invocations/not-an-id", 404),
    ] {
        let (got, text) = http(c.addr, "GET", path, b"").await;
        assert_eq!(got, code, "{path}: {text}");
        assert!(text.contains("\"error\""), "{path}: {text}");
    }
    // An unknown function, bad JSON and an event over async_payload_bytes are refused.
    for (path, body, code) in [
        ("/runLambda/missing?async=1", b"{}".to_vec(), 404),
        ("/runLambda/double?async=1", b"{nope".to_vec(), 400),
        (
            "/runLambda/double?async=1",
            format!(r#"{{"x": "{}"}}"#, "a".repeat(300 << 10)).into_bytes(),
            413,
        ),
    ] {
        let (got, _, text) = request(c.addr, "POST", path, &[], &body).await;
        assert_eq!(got, code, "{path}: {text}");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_events_are_retried_then_dead_lettered() {
    if !can_run("failed_events_are_retried_then_dead_lettered") {
        return;
    }
    let mut c = TestCluster::start(r#"{"async_retry_delay_ms": 100}"#).await;
    // Fails the first two times it sees an event id (the count lives in the warm sandbox,
    // which one lambda's retries reuse), then succeeds.
    c.add_handler(
        "flaky",
        "seen = {}\n\ndef handler(event):\n    k = event['k']\n    seen[k] = seen.get(k, 0) + 1\n    if seen[k] < 3:\n        raise RuntimeError('attempt %d fails' % seen[k])\n    return seen[k]\n",
    );
    c.add_handler(
        "always",
        "def handler(event):\n    raise KeyError('never works')\n",
    );
    c.add_handler("sink", "def handler(event):\n    return event\n");
    std::fs::write(
        c.registry().join("flaky/lambda.json"),
        r#"{"on_success": "sink"}"#,
    )
    .unwrap();
    let flaky = queue_async(&c, "flaky", r#"{"k": "a"}"#).await;
    let always = queue_async(&c, "always", "{}").await;
    let rec = wait_status(&c, &flaky, "succeeded", Duration::from_secs(60)).await;
    assert_eq!(rec["attempts"], 3, "{rec}");
    assert_eq!(rec["result"], 3, "{rec}");
    // on_success: the sink got AWS's destination record of the success.
    let deadline = Instant::now() + Duration::from_secs(60);
    let record = loop {
        let (_, text) = http(
            c.addr,
            "GET",
            "/invocations?function=sink&status=succeeded",
            b"",
        )
        .await;
        let list: Value = serde_json::from_str(&text).unwrap();
        let found = list["invocations"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|r| {
                (r["result"]["requestContext"]["condition"] == "Success")
                    .then(|| r["result"].clone())
            });
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no destination record: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(record["requestPayload"], json!({"k": "a"}), "{record}");
    assert_eq!(record["responsePayload"], 3, "{record}");
    assert_eq!(
        record["requestContext"]["approximateInvokeCount"], 3,
        "{record}"
    );
    assert!(
        record["requestContext"]["functionArn"]
            .as_str()
            .unwrap()
            .ends_with(":function:flaky:$LATEST"),
        "{record}"
    );
    let rec = wait_status(&c, &always, "failed", Duration::from_secs(60)).await;
    assert_eq!(rec["attempts"], 3, "exactly three attempts: {rec}");
    assert_eq!(rec["condition"], "RetriesExhausted", "{rec}");
    assert_eq!(rec["error"]["type"], "KeyError", "{rec}");
    assert!(
        rec["error"]["message"]
            .as_str()
            .unwrap()
            .contains("never works"),
        "{rec}"
    );
    // The dead letter is listed as failed.
    let (_, text) = http(c.addr, "GET", "/invocations?status=failed", b"").await;
    let list: Value = serde_json::from_str(&text).unwrap();
    let failed = list["invocations"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{list}");
    assert_eq!(failed[0]["id"], always.as_str());

    // retry_attempts 0 in lambda.json: one attempt.
    std::fs::write(
        c.registry().join("always/lambda.json"),
        r#"{"retry_attempts": 0}"#,
    )
    .unwrap();
    let once = queue_async(&c, "always", "{}").await;
    let rec = wait_status(&c, &once, "failed", Duration::from_secs(60)).await;
    assert_eq!(rec["attempts"], 1, "{rec}");
    c.shutdown().await;
}
