//! The Invoke API: `POST /2015-03-31/functions/<name>/invocations` (and the deprecated
//! `POST /2014-11-13/functions/<name>/invoke-async/`), as boto3 and aws-cli call it.
//!
//! A request, in order:
//! 1. its request id: the caller's `X-Amz-Request-Id` or `X-Request-Id` if given (checked),
//!    else a new one; every answer carries it;
//! 2. the function: `FunctionName` (a name, partial or full ARN) and `?Qualifier=` (only
//!    `$LATEST`);
//! 3. `X-Amz-Invocation-Type` (`RequestResponse`, the default; `Event`; `DryRun`) and
//!    `X-Amz-Log-Type` (`None`, the default; `Tail`);
//! 4. the body, under `max_body_bytes` (AWS's 6 MB) for a synchronous call and
//!    `async_payload_bytes` (256 KB) for an event: 413 `RequestTooLargeException` beyond;
//! 5. the signature: with credentials, the request must be signed and verify (403 otherwise);
//!    without credentials any caller may invoke, as at `/runLambda`;
//! 6. the payload must be JSON: 400 `InvalidRequestContentException` otherwise;
//! 7. `DryRun`: 204 once the function is found; `Event`: queued durably, then 202
//!    ([`super::AsyncQueue::submit`]); `RequestResponse`: run, then 200 with the function's
//!    answer, or its error with `X-Amz-Function-Error: Unhandled` (`super::outcome`), and
//!    `X-Amz-Log-Result` for `Tail`.

use std::time::{Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::outcome::{self, Failure};
use super::{answer, aws_error, caller_request_id, InvokeContext};
use crate::api::ApiState;
use crate::aws::arn::LATEST;
use crate::aws::sigv4::{self, RequestParts};
use crate::aws::AwsError;
use crate::error::ApiError;
use crate::manager::InvokeOptions;
use crate::name::LambdaName;
use crate::runtime_client::RequestId;
use crate::timings::Phase;

/// `X-Amz-Invocation-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationType {
    RequestResponse,
    Event,
    DryRun,
}

impl InvocationType {
    /// The header's value; `None` for one AWS does not have.
    pub fn parse(raw: Option<&str>) -> Option<Self> {
        match raw {
            None | Some("RequestResponse") => Some(Self::RequestResponse),
            Some("Event") => Some(Self::Event),
            Some("DryRun") => Some(Self::DryRun),
            Some(_) => None,
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The parts of a request the Invoke API reads before its body.
struct Head {
    name: LambdaName,
    kind: InvocationType,
    tail: bool,
}

fn head(
    ctx: &InvokeContext,
    raw_name: &str,
    legacy_async: bool,
    req: &Request<Incoming>,
) -> Result<Head, AwsError> {
    let name = ctx.arns.function_name(raw_name)?;
    let query = crate::aws::routes::query_pairs(req.uri().query())?;
    let qualifier = query
        .iter()
        .find(|(k, _)| k == "Qualifier")
        .map(|(_, v)| v.as_str());
    ctx.arns.check_qualifier(&name, qualifier)?;
    let headers = req.headers();
    let kind = if legacy_async {
        InvocationType::Event
    } else {
        let raw = header(headers, "x-amz-invocation-type");
        InvocationType::parse(raw).ok_or_else(|| {
            AwsError::invalid(format!(
                "X-Amz-Invocation-Type {:?} is not RequestResponse, Event or DryRun",
                raw.unwrap_or_default()
            ))
        })?
    };
    let tail = match header(headers, "x-amz-log-type") {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => {
            return Err(AwsError::invalid(format!(
                "X-Amz-Log-Type {other:?} is not None or Tail"
            )))
        }
    };
    Ok(Head { name, kind, tail })
}

/// 413 as the Invoke API answers it.
fn too_large(limit: usize, size: Option<usize>) -> AwsError {
    AwsError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestTooLargeException",
        match size {
            Some(n) => format!("Request must be smaller than {limit} bytes for the Invoke operation (it is {n} bytes)"),
            None => format!("Request must be smaller than {limit} bytes for the Invoke operation"),
        },
    )
}

/// A body error as the Invoke API answers it.
fn body_error(e: ApiError, limit: usize) -> AwsError {
    match e {
        ApiError::BodyTooLarge { .. } => too_large(limit, None),
        ApiError::BodyTimeout { timeout_s } => AwsError::new(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeoutException",
            format!("the request body did not arrive within {timeout_s} s"),
        ),
        ApiError::BadJson { message } => {
            AwsError::bad_content(format!("Could not parse request body into json: {message}"))
        }
        other => AwsError::bad_content(other.to_string()),
    }
}

/// Step 5.
fn authorize(
    ctx: &InvokeContext,
    req_parts: &http::request::Parts,
    body: &[u8],
) -> Result<(), AwsError> {
    let Some(creds) = &ctx.credentials else {
        return Ok(());
    };
    if !sigv4::is_signed(&req_parts.headers) {
        return Err(sigv4::AuthError::Missing.into());
    }
    let parts = RequestParts {
        method: req_parts.method.as_str(),
        path: req_parts.uri.path(),
        query: req_parts.uri.query(),
        headers: &req_parts.headers,
        body,
    };
    sigv4::verify(&parts, creds, SystemTime::now())?;
    Ok(())
}

/// Serves one Invoke request (see the module docs); never fails at the HTTP level.
pub async fn serve(
    state: &ApiState,
    raw_name: &str,
    legacy_async: bool,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    // 1.
    let request_id = match caller_request_id(req.headers()) {
        Ok(id) => id,
        Err(e) => return aws_error(&AwsError::invalid(e.to_string()), &RequestId::new()),
    };
    let response = match invoke(state, raw_name, legacy_async, req, &request_id).await {
        Ok(resp) => resp,
        Err(e) => aws_error(&e, &request_id),
    };
    state
        .manager
        .timings()
        .record(Phase::Request, started.elapsed());
    response
}

async fn invoke(
    state: &ApiState,
    raw_name: &str,
    legacy_async: bool,
    req: Request<Incoming>,
    request_id: &RequestId,
) -> Result<Response<Full<Bytes>>, AwsError> {
    let ctx = &state.invoke;
    // 2-3.
    let head = head(ctx, raw_name, legacy_async, &req)?;
    // 4.
    let limit = match head.kind {
        InvocationType::Event => ctx.async_payload_bytes.min(state.max_body_bytes),
        _ => state.max_body_bytes,
    };
    // Read up to twice the limit, so that a client sending somewhat too much gets its 413
    // rather than a connection closed under its upload.
    let read_limit = limit.saturating_mul(2);
    let declared = crate::management::declared_length(&req);
    let (parts, body) = req.into_parts();
    let t = Instant::now();
    let body = crate::management::read_body(body, declared, read_limit, state.body_timeout)
        .await
        .map_err(|e| body_error(e, limit))?;
    state.manager.timings().record(Phase::ReadBody, t.elapsed());
    if body.len() > limit {
        return Err(too_large(limit, Some(body.len())));
    }
    // 5.
    authorize(ctx, &parts, &body)?;
    // 6.
    let event = crate::api::check_event(body).map_err(|e| body_error(e, limit))?;
    let arn = ctx.arns.function(&head.name);
    // 7.
    match head.kind {
        InvocationType::DryRun => {
            if let Err(e) = state.manager.check_function(&head.name).await {
                return Err(failure_error(outcome::classify(&e, &arn, request_id)));
            }
            Ok(answer(
                StatusCode::NO_CONTENT,
                Bytes::new(),
                request_id,
                &[],
            ))
        }
        InvocationType::Event => {
            let Some(queue) = &ctx.queue else {
                return Err(AwsError::service("this worker has no asynchronous queue"));
            };
            let record = queue.submit(&head.name, event, request_id).await?;
            let body = if legacy_async {
                Bytes::from_static(b"{\"Status\": 202}")
            } else {
                Bytes::new()
            };
            let location = format!("/invocations/{}", record.id);
            Ok(answer(
                StatusCode::ACCEPTED,
                body,
                request_id,
                &[("location", location)],
            ))
        }
        InvocationType::RequestResponse => {
            let options = InvokeOptions {
                tail: head.tail,
                ..InvokeOptions::default()
            };
            let invoked = state
                .manager
                .invoke(&head.name, event, request_id, options)
                .await;
            let mut extra = vec![("x-amz-executed-version", LATEST.to_owned())];
            if let Some(tail) = &invoked.report.log_tail {
                extra.push((
                    "x-amz-log-result",
                    base64::engine::general_purpose::STANDARD.encode(tail.as_bytes()),
                ));
            }
            match invoked.result {
                Ok(payload) => Ok(answer(StatusCode::OK, payload, request_id, &extra)),
                Err(e) => match outcome::classify(&e, &arn, request_id) {
                    Failure::Function(f) => {
                        extra.push(("x-amz-function-error", "Unhandled".to_owned()));
                        Ok(answer(
                            StatusCode::OK,
                            Bytes::from(f.payload(request_id)),
                            request_id,
                            &extra,
                        ))
                    }
                    other => Err(failure_error(other)),
                },
            }
        }
    }
}

/// The AWS error of a failure that is not the function's.
fn failure_error(f: Failure) -> AwsError {
    match f {
        Failure::Function(f) => AwsError::service(format!("{}: {}", f.error_type, f.message)),
        Failure::NotFound(e) | Failure::Busy(e) | Failure::Request(e) | Failure::Platform(e) => e,
    }
}
