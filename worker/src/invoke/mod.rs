//! Invocation beyond `/runLambda`: the AWS Invoke API ([`aws_invoke`]), asynchronous events
//! in a durable queue ([`AsyncQueue`], `dispatch.rs`), and the invocation records
//! (`GET /invocations/<id>`, `GET /invocations`).
//!
//! Every answer of an invocation carries its request id in `x-amzn-RequestId` (AWS's),
//! `X-Amz-Request-Id` and `X-Request-Id`; a caller may give its own in either of the latter
//! two ([`caller_request_id`]). What a failed call answers is decided in [`outcome`].

pub mod aws_invoke;
mod dispatch;
pub mod outcome;
mod records;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::aws::arn::Arns;
use crate::aws::{AwsError, Credentials};
use crate::runtime_client::{InvalidRequestId, RequestId};

pub use dispatch::{AsyncQueue, AsyncQueueError, SubmitError};
pub use records::{counts_json, serve_record, serve_records};

/// `2026-12-02T10:00:00.123Z` for milliseconds since the Unix epoch.
pub fn rfc3339_ms(ms: u64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    time::OffsetDateTime::from(t)
        .format(FORMAT)
        .unwrap_or_else(|_| ms.to_string())
}

/// The headers an invocation's answer carries its request id in.
pub const REQUEST_ID_HEADERS: [&str; 3] = ["x-amzn-requestid", "x-amz-request-id", "x-request-id"];

/// What the invocation paths need besides the manager.
#[derive(Debug)]
pub struct InvokeContext {
    pub arns: Arns,
    /// With credentials, Invoke requests must be signed with them.
    pub credentials: Option<Credentials>,
    /// The asynchronous queue (`None` in tests that need none).
    pub queue: Option<std::sync::Arc<AsyncQueue>>,
    /// Largest event of an asynchronous invocation (`async_payload_bytes`).
    pub async_payload_bytes: usize,
}

/// The request id a caller gave (`X-Amz-Request-Id`, else `X-Request-Id`), or a new one; a
/// given one that is not a valid id is refused (a 400).
pub fn caller_request_id(headers: &HeaderMap) -> Result<RequestId, InvalidRequestId> {
    let given = ["x-amz-request-id", "x-request-id"]
        .iter()
        .find_map(|h| headers.get(*h));
    let id = match given {
        None => RequestId::new(),
        Some(v) => RequestId::given(&String::from_utf8_lossy(v.as_bytes()))?,
    };
    // Every later log line of the request carries it (the request's span, `crate::api`).
    tracing::Span::current().record("request_id", tracing::field::display(&id));
    Ok(id)
}

/// Adds the request id headers to `headers`.
pub fn add_request_id(headers: &mut HeaderMap, request_id: &RequestId) {
    if let Ok(v) = HeaderValue::from_str(&request_id.to_string()) {
        for name in REQUEST_ID_HEADERS {
            headers.insert(HeaderName::from_static(name), v.clone());
        }
    }
}

/// An answer with a JSON body (none for 204 or an empty body), the request id and `extra`
/// headers.
pub(crate) fn answer(
    status: StatusCode,
    body: Bytes,
    request_id: &RequestId,
    extra: &[(&'static str, String)],
) -> Response<Full<Bytes>> {
    let has_body = !body.is_empty();
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    if has_body {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    add_request_id(headers, request_id);
    for (name, value) in extra {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    resp
}

/// An AWS error's answer: its body, `x-amzn-ErrorType`, the request id, and `Retry-After`
/// on a 429.
pub(crate) fn aws_error(e: &AwsError, request_id: &RequestId) -> Response<Full<Bytes>> {
    if e.status.is_server_error() {
        tracing::warn!(code = e.code, message = %e.message, %request_id, "invoke failed");
    } else {
        tracing::debug!(code = e.code, message = %e.message, %request_id, "invoke refused");
    }
    let mut extra = vec![("x-amzn-errortype", e.code.to_owned())];
    if e.status == StatusCode::TOO_MANY_REQUESTS {
        extra.push(("retry-after", outcome::RETRY_AFTER_S.to_string()));
    }
    answer(e.status, Bytes::from(e.body()), request_id, &extra)
}
