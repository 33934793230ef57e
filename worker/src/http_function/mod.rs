//! HTTP functions: any method on `/run/<name>` and `/run/<name>/<path...>` (OpenLambda's
//! path). A request, in order:
//!
//! 1. its request id (the caller's `X-Amz-Request-Id` / `X-Request-Id`, or a new one);
//! 2. the function's configuration (`404` when there is no such function);
//! 3. the method, against `triggers.http.methods` (`405` with `Allow` when it is not there);
//! 4. the body, of any content type, up to `max_body_bytes` (`413` beyond);
//! 5. the event: API Gateway's payload format 2.0, or 1.0 when `lambda.json` says
//!    `"payload_format": "1.0"` ([`event`]); a `wsgi` or `asgi` entry gets the same event and
//!    the runtime turns it into an environ or a scope;
//! 6. the call, as a `/runLambda` call runs (same sandboxes, limits and queue per lambda);
//! 7. the answer, mapped back as API Gateway maps it ([`answer`]); a call that failed answers
//!    as `/runLambda` does, and an answer that cannot be a response is `502`.

pub mod answer;
pub mod event;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::api::ApiState;
use crate::error::ApiError;
use crate::lambda_config::allows_method;
use crate::name::LambdaName;
use crate::runtime_client::RequestId;
use crate::timings::Phase;

pub use answer::{map_answer, BadAnswer, HttpAnswer};
pub use event::HttpRequest;

/// Serves one request to the function `name`; `path` is the part of the request's path below
/// `/run/<name>` (`/` at least).
pub async fn serve(
    state: &ApiState,
    name: &LambdaName,
    path: &str,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let (result, request_id) = match crate::invoke::caller_request_id(req.headers()) {
        Ok(id) => (run(state, name, path, req, peer, &id).await, Some(id)),
        Err(e) => (Err(ApiError::from(e)), None),
    };
    state
        .manager
        .timings()
        .record(Phase::Request, started.elapsed());
    let mut resp = match result {
        Ok(answer) => {
            let mut resp = Response::new(Full::new(answer.body));
            *resp.status_mut() = answer.status;
            *resp.headers_mut() = answer.headers;
            resp
        }
        Err(e) => {
            crate::api::log_error(&e, format!("/run/{name}{path}"));
            e.into_response()
        }
    };
    if let Some(id) = &request_id {
        crate::invoke::add_request_id(resp.headers_mut(), id);
    }
    resp
}

async fn run(
    state: &ApiState,
    name: &LambdaName,
    path: &str,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
    request_id: &RequestId,
) -> Result<HttpAnswer, ApiError> {
    let config = state.manager.function_config(name).await?;
    let method = req.method().as_str().to_owned();
    if !allows_method(config.http_methods.as_deref(), &method) {
        return Err(method_not_allowed(
            &method,
            name,
            config.http_methods.as_deref().unwrap_or_default(),
        ));
    }
    let t = Instant::now();
    let declared = crate::management::declared_length(&req);
    let (parts, body) = req.into_parts();
    let body =
        crate::management::read_body(body, declared, state.max_body_bytes, state.body_timeout)
            .await?;
    state.manager.timings().record(Phase::ReadBody, t.elapsed());
    let time_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let request = HttpRequest {
        method: &method,
        path,
        query: parts.uri.query().unwrap_or_default(),
        headers: &parts.headers,
        body: &body,
        source_ip: peer.ip().to_canonical().to_string(),
        request_id: request_id.to_string(),
        time_ms,
        account_id: &state.invoke.arns.account_id,
        api_id: name.as_str(),
    };
    let event = Bytes::from(request.event(config.payload_format.unwrap_or_default()));
    drop(body);
    let result = state.manager.run(name, event, request_id).await?;
    map_answer(&result).map_err(|e| ApiError::BadAnswer {
        lambda: name.to_string(),
        message: e.0,
    })
}

/// `405` naming the methods the function takes (`HEAD` with `GET`).
fn method_not_allowed(method: &str, name: &LambdaName, methods: &[String]) -> ApiError {
    let mut allow: Vec<&str> = methods.iter().map(String::as_str).collect();
    if allow.contains(&"GET") && !allow.contains(&"HEAD") {
        allow.push("HEAD");
    }
    ApiError::MethodNotAllowed {
        method: method.to_owned(),
        path: format!("/run/{name}"),
        allow: allow.join(", ").into(),
    }
}

#[cfg(test)]
mod tests;
