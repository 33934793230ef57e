//! The management API against an in-memory store: every operation, its JSON as boto3 reads
//! it, every error's shape, and who may change what.

mod auth;
mod event_config;
mod fake;
mod functions;
mod layers;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use super::sigv4;
use super::{AwsRequest, AwsResponse, Credentials, LambdaApi};
use crate::lambda_config::LambdaLimits;
use fake::FakeStore;

pub(crate) const REGION: &str = "us-east-1";
pub(crate) const ACCOUNT: &str = "123456789012";
pub(crate) const HOST: &str = "127.0.0.1:9000";
/// A zip archive's bytes in base64 (the fake store takes any bytes but those starting with
/// `BAD`).
pub(crate) const ZIP_B64: &str = "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==";

pub(crate) fn defaults() -> LambdaLimits {
    LambdaLimits {
        memory_mb: 512,
        timeout_s: 60,
        max_procs: 64,
        cpu_percent: None,
        max_concurrency: 4,
        tmp_mb: 256,
    }
}

pub(crate) fn creds() -> Credentials {
    Credentials::new("AKIDTEST", "test-secret-key").unwrap()
}

/// 2026-12-02 03:04:05 UTC.
pub(crate) fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_180_645)
}

/// An API without credentials over a fresh store (requests from loopback may change).
pub(crate) fn open_api() -> (LambdaApi, Arc<FakeStore>) {
    let store = Arc::new(FakeStore::default());
    let api = LambdaApi::new(store.clone(), None, REGION, ACCOUNT, defaults());
    (api, store)
}

/// An API with [`creds`].
pub(crate) fn signed_api() -> (LambdaApi, Arc<FakeStore>) {
    let store = Arc::new(FakeStore::default());
    let api = LambdaApi::new(store.clone(), Some(creds()), REGION, ACCOUNT, defaults());
    (api, store)
}

/// A request from loopback, unsigned; `path` may hold `?query`.
pub(crate) fn request(method: &str, path_and_query: &str, body: &[u8]) -> AwsRequest {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (path_and_query.to_owned(), None),
    };
    let mut headers = HeaderMap::new();
    headers.insert("host", HOST.parse().unwrap());
    if !body.is_empty() {
        headers.insert("content-type", "application/json".parse().unwrap());
    }
    AwsRequest {
        method: Method::from_bytes(method.as_bytes()).unwrap(),
        path,
        query,
        headers,
        body: bytes::Bytes::copy_from_slice(body),
        peer_is_loopback: true,
    }
}

/// `req` signed with `creds` at `at`, as boto3 signs it.
pub(crate) fn sign(mut req: AwsRequest, creds: &Credentials, at: SystemTime) -> AwsRequest {
    let url = match &req.query {
        Some(q) => format!("http://{HOST}{}?{q}", req.path),
        None => format!("http://{HOST}{}", req.path),
    };
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let added = sigv4::sign(
        req.method.as_str(),
        &url,
        &pairs,
        &req.body,
        creds,
        REGION,
        at,
    )
    .unwrap();
    for (n, v) in added {
        req.headers.insert(n, v.parse().unwrap());
    }
    req
}

/// The answer's JSON body (`Null` for an empty one).
pub(crate) fn body(r: &AwsResponse) -> Value {
    if r.body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", r.body))
}

/// Sends a request from loopback to `api`.
pub(crate) fn call(
    api: &LambdaApi,
    method: &str,
    path: &str,
    json_body: Option<Value>,
) -> AwsResponse {
    let bytes = json_body
        .map(|b| serde_json::to_vec(&b).unwrap())
        .unwrap_or_default();
    api.handle(&request(method, path, &bytes), now())
}

/// Asserts an AWS error answer: status, `x-amzn-ErrorType`, and a message containing
/// `needle` under the model's key.
#[track_caller]
pub(crate) fn assert_error(r: &AwsResponse, status: u16, code: &str, needle: &str) {
    let b = body(r);
    assert_eq!(r.status, StatusCode::from_u16(status).unwrap(), "{b}");
    assert_eq!(r.header("x-amzn-ErrorType"), Some(code), "{b}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r
        .header("x-amzn-RequestId")
        .is_some_and(|id| id.len() == 36));
    let message = b
        .get("message")
        .or_else(|| b.get("Message"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no message in {b}"));
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
    assert!(b["Type"] == "User" || b["Type"] == "Service", "{b}");
}

/// A CreateFunction body for `name` with `extra` members.
pub(crate) fn create_body(name: &str, extra: Value) -> Value {
    let mut b = json!({
        "FunctionName": name,
        "Runtime": "python3.12",
        "Role": format!("arn:aws:iam::{ACCOUNT}:role/r"),
        "Handler": "app.handler",
        "Code": {"ZipFile": ZIP_B64},
    });
    if let (Some(map), Value::Object(extra)) = (b.as_object_mut(), extra) {
        map.extend(extra);
    }
    b
}

/// Creates `name` from loopback on an open API; panics unless 201.
pub(crate) fn create(api: &LambdaApi, name: &str, extra: Value) -> Value {
    let r = call(
        api,
        "POST",
        "/2015-03-31/functions",
        Some(create_body(name, extra)),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", body(&r));
    body(&r)
}

pub(crate) fn arn(name: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")
}

/// `arn` percent-encoded as botocore puts it in a path.
pub(crate) fn encoded_arn(name: &str) -> String {
    arn(name).replace(':', "%3A")
}
