//! The invocation records of a worker's asynchronous queue over HTTP:
//!
//! - `GET /invocations/<id>`: one record, `{"id", "function", "request_id", "status"
//!   (queued, running, succeeded, failed), "attempts", "created", "started", "finished",
//!   "next_attempt", "result" (the function's answer, JSON), "error" ({"type", "message"}),
//!   "condition" (why it failed for good)}`; timestamps RFC 3339 UTC;
//! - `GET /invocations?function=NAME&status=failed&limit=N&after=CURSOR`: `{"invocations":
//!   [...], "next": CURSOR or null, "counts": {...}}`, newest first, without payloads.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use super::rfc3339_ms;
use crate::api::ApiState;
use crate::error::ApiError;
use crate::invocations::{Counts, Cursor, Invocation, InvocationId, ListFilter, Status};
use crate::name::LambdaName;

/// Default and largest `limit` of a list.
const LIST_LIMIT: (usize, usize) = (100, 1000);

/// A record as the API shows it (`with_payload`: the event too, base64 if not JSON).
pub fn record_json(inv: &Invocation, with_payload: bool) -> Value {
    let time = |ms: Option<u64>| ms.map(rfc3339_ms).map_or(Value::Null, Value::from);
    let json_of = |b: &Option<Vec<u8>>| {
        b.as_ref()
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .unwrap_or(Value::Null)
    };
    let mut v = json!({
        "id": inv.id.to_string(),
        "function": inv.function,
        "request_id": inv.request_id,
        "status": inv.status.as_str(),
        "attempts": inv.attempts,
        "created": rfc3339_ms(inv.created_ms),
        "started": time(inv.started_ms),
        "finished": time(inv.finished_ms),
        "next_attempt": if inv.status == Status::Queued { Value::from(rfc3339_ms(inv.not_before_ms)) } else { Value::Null },
        "result": json_of(&inv.result),
        "error": inv.error.as_ref().map_or(Value::Null, |e| json!({"type": e.error_type, "message": e.message})),
        "condition": inv.condition.map_or(Value::Null, |c| Value::from(c.as_str())),
    });
    if inv.result_truncated {
        v["result_truncated"] = Value::Bool(true);
    }
    if with_payload {
        v["payload"] = serde_json::from_slice::<Value>(&inv.payload).unwrap_or(Value::Null);
    }
    v
}

fn json_answer(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(v.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn queue(state: &ApiState) -> Result<Arc<crate::invocations::Queue>, ApiError> {
    state
        .invoke
        .queue
        .as_ref()
        .map(|q| Arc::clone(q.store()))
        .ok_or_else(|| ApiError::Internal {
            message: "this worker has no asynchronous queue".to_owned(),
        })
}

/// `GET /invocations/<id>`.
pub async fn serve_record(state: &ApiState, id: &str) -> Response<Full<Bytes>> {
    match record(state, id).await {
        Ok(v) => json_answer(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

async fn record(state: &ApiState, id: &str) -> Result<Value, ApiError> {
    let queue = queue(state)?;
    let not_found = || ApiError::InvocationNotFound {
        id: id.chars().take(100).collect(),
    };
    let key = InvocationId::parse(id).map_err(|_| not_found())?;
    let found = tokio::task::spawn_blocking(move || queue.get(&key))
        .await
        .map_err(|e| ApiError::Internal {
            message: format!("record lookup failed: {e}"),
        })?
        .map_err(|e| ApiError::Internal {
            message: e.to_string(),
        })?;
    found
        .map(|inv| record_json(&inv, true))
        .ok_or_else(not_found)
}

/// `GET /invocations?...`.
pub async fn serve_records(state: &ApiState, query: Option<&str>) -> Response<Full<Bytes>> {
    match records(state, query).await {
        Ok(v) => json_answer(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

fn bad(message: String) -> ApiError {
    ApiError::BadQuery { message }
}

async fn records(state: &ApiState, query: Option<&str>) -> Result<Value, ApiError> {
    let pairs = crate::aws::routes::query_pairs(query).map_err(|e| bad(e.message))?;
    let mut filter = ListFilter {
        limit: LIST_LIMIT.0,
        ..ListFilter::default()
    };
    for (k, v) in pairs {
        match k.as_str() {
            "function" => {
                let name = LambdaName::parse(&v).map_err(|reason| ApiError::InvalidName {
                    name: v.chars().take(200).collect(),
                    reason,
                })?;
                filter.function = Some(name.to_string());
            }
            "status" => {
                filter.status = Some(parse_status(&v).ok_or_else(|| {
                    bad(format!(
                        "status {v:?} is not queued, running, succeeded or failed"
                    ))
                })?)
            }
            "limit" => {
                filter.limit = match v.parse::<usize>() {
                    Ok(n) if (1..=LIST_LIMIT.1).contains(&n) => n,
                    _ => {
                        return Err(bad(format!(
                            "limit must be from 1 to {}, not {v:?}",
                            LIST_LIMIT.1
                        )))
                    }
                }
            }
            "after" => {
                filter.after = Some(
                    Cursor::parse(&v)
                        .ok_or_else(|| bad(format!("after {v:?} is not a cursor this API gave")))?,
                )
            }
            other => {
                return Err(bad(format!(
                    "unknown parameter {other:?} (known: function, status, limit, after)"
                )))
            }
        }
    }
    let queue = queue(state)?;
    let (list, counts) = tokio::task::spawn_blocking(move || {
        let list = queue.list(&filter)?;
        let counts = queue.counts()?;
        Ok::<_, crate::invocations::QueueError>((list, counts))
    })
    .await
    .map_err(|e| ApiError::Internal {
        message: format!("record listing failed: {e}"),
    })?
    .map_err(|e| ApiError::Internal {
        message: e.to_string(),
    })?;
    let (items, next) = list;
    Ok(json!({
        "invocations": items.iter().map(|i| record_json(i, false)).collect::<Vec<_>>(),
        "next": next.map(|c| c.to_string()),
        "counts": counts_json(&counts),
    }))
}

/// `{"queued", "running", "succeeded", "failed", "bytes"}`.
pub fn counts_json(c: &Counts) -> Value {
    json!({
        "queued": c.queued,
        "running": c.running,
        "succeeded": c.succeeded,
        "failed": c.failed,
        "bytes": c.bytes,
    })
}

fn parse_status(raw: &str) -> Option<Status> {
    [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
    ]
    .into_iter()
    .find(|s| s.as_str() == raw)
}
