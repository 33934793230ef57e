//! The HTTP API: parsing a request into a typed [`Action`], then executing it.
//!
//! - `GET /` (and `/dashboard`): the dashboard page, which draws `/stats` ([`crate::dashboard`])
//! - `GET /status`: `ready` (200) once the worker serves, 503 while it shuts down
//! - `GET /stats`: JSON with the worker, its live sandboxes and per-lambda counters
//! - `GET /metrics`: the same and latency histograms for Prometheus ([`crate::metrics`])
//! - `POST /runLambda/<name>`: the body (JSON; empty means `{}`) is the event; the answer is the
//!   handler's return value as JSON
//! - `POST /functions/<name>/install`: installs the function's packages ahead of its first call
//!   (`admin install`); answers when they are ready
//! - any method on `/run/<name>` and `/run/<name>/<path...>`: an HTTP function
//!   ([`crate::http_function`])
//! - the AWS Lambda management API (`/2015-03-31/functions/...`, layers, tags), archive
//!   downloads (`/registry/archives/<sha256>`) and a function's docs
//!   (`/functions/<name>/docs`, `/docs.yml`): [`crate::management`]
//!
//! Errors are mapped to responses in one place, [`ApiError::into_response`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use crate::error::ApiError;
use crate::manager::{Backend, Unavailable};
use crate::name::LambdaName;
use crate::runtime_client::RequestId;
use crate::timings::Phase;

/// The header a call's answer carries its request id in (the function's
/// `context.aws_request_id`), as AWS names it; [`crate::invoke::REQUEST_ID_HEADERS`] has the
/// others.
pub const REQUEST_ID_HEADER: &str = "x-amzn-RequestId";
use crate::WorkerManager;

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Status,
    Stats,
    Metrics,
    /// The dashboard's page or one of its files.
    Dashboard(crate::dashboard::Asset),
    Run(LambdaName),
    /// An HTTP function (`/run/<name>/<path>`), with the path below the name.
    Http {
        name: LambdaName,
        path: String,
    },
    /// The AWS Invoke API (`legacy`: the deprecated InvokeAsync), with the `FunctionName`
    /// label as given.
    Invoke {
        function: String,
        legacy: bool,
    },
    /// `GET /invocations/<id>`.
    Invocation(String),
    /// `GET /invocations`.
    Invocations,
    /// `POST /functions/<name>/install`: the function's packages, ahead of its first call.
    Install(LambdaName),
    Management(crate::management::Route),
}

/// Maps method and path to an action, validating the lambda name before anything else.
pub fn route(method: &Method, path: &str) -> Result<Action, ApiError> {
    let not_allowed = |allow: &'static str| ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: path.to_owned(),
        allow: allow.into(),
    };
    if *method == Method::POST {
        if let Some(invoke) = invoke_route(path) {
            return Ok(invoke);
        }
    }
    if let Some(rest) = path.strip_prefix("/run/") {
        return http_route(rest);
    }
    if let Some(asset) = crate::dashboard::route(method, path) {
        return asset.map(Action::Dashboard);
    }
    if let Some(raw) = path
        .strip_prefix("/functions/")
        .and_then(|rest| rest.strip_suffix("/install"))
    {
        if *method != Method::POST {
            return Err(not_allowed("POST"));
        }
        return LambdaName::parse(raw)
            .map(Action::Install)
            .map_err(|reason| ApiError::InvalidName {
                name: raw.chars().take(200).collect(),
                reason,
            });
    }
    match path {
        "/status" => match *method {
            Method::GET | Method::HEAD => Ok(Action::Status),
            _ => Err(not_allowed("GET, HEAD")),
        },
        "/stats" => match *method {
            Method::GET => Ok(Action::Stats),
            _ => Err(not_allowed("GET")),
        },
        "/metrics" => match *method {
            Method::GET | Method::HEAD => Ok(Action::Metrics),
            _ => Err(not_allowed("GET, HEAD")),
        },
        "/invocations" => match *method {
            Method::GET => Ok(Action::Invocations),
            _ => Err(not_allowed("GET")),
        },
        _ if path.starts_with("/invocations/") => match *method {
            Method::GET => Ok(Action::Invocation(path["/invocations/".len()..].to_owned())),
            _ => Err(not_allowed("GET")),
        },
        _ => match path.strip_prefix("/runLambda/") {
            Some(raw) => {
                if *method != Method::POST {
                    return Err(not_allowed("POST"));
                }
                LambdaName::parse(raw)
                    .map(Action::Run)
                    .map_err(|reason| ApiError::InvalidName {
                        name: raw.chars().take(200).collect(),
                        reason,
                    })
            }
            None if path == "/runLambda" => Err(ApiError::InvalidName {
                name: String::new(),
                reason: "the name is empty",
            }),
            None => match crate::management::route(path) {
                Some(route) => route.map(Action::Management),
                None => Err(ApiError::NotFound {
                    path: path.to_owned(),
                }),
            },
        },
    }
}

/// The Invoke API's paths (`POST` only): `/2015-03-31/functions/<name>/invocations`, and the
/// deprecated `/2014-11-13/functions/<name>/invoke-async/`; everything else of the AWS API is
/// management. Matched directly rather than through the API's table: it is a call's path.
/// A name that does not decode falls through to the management API, which says why.
fn invoke_route(path: &str) -> Option<Action> {
    let (rest, legacy) = match path.strip_prefix("/2015-03-31/functions/") {
        Some(rest) => (rest.strip_suffix("/invocations")?, false),
        None => {
            let rest = path.strip_prefix("/2014-11-13/functions/")?;
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            (rest.strip_suffix("/invoke-async")?, true)
        }
    };
    if rest.is_empty() || rest.contains('/') {
        return None;
    }
    let function = crate::aws::routes::decode(rest, "FunctionName").ok()?;
    Some(Action::Invoke { function, legacy })
}

/// `/run/<name>` and `/run/<name>/<path...>`, any method: the name, and the path below it
/// (`/` at least), as received.
fn http_route(rest: &str) -> Result<Action, ApiError> {
    let (raw, below) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let name = LambdaName::parse(raw).map_err(|reason| ApiError::InvalidName {
        name: raw.chars().take(200).collect(),
        reason,
    })?;
    Ok(Action::Http {
        name,
        path: below.to_owned(),
    })
}

/// State the HTTP handlers need.
#[derive(Debug)]
pub struct ApiState {
    pub manager: Arc<WorkerManager>,
    pub max_body_bytes: usize,
    /// How long a request's body may take to arrive once its head has (the head itself has
    /// hyper's 30 s `header_read_timeout`): a client trickling bytes cannot hold a call open.
    pub body_timeout: Duration,
    pub started: Instant,
    pub cgroup_version: &'static str,
    /// Where management requests go.
    pub functions: crate::management::Functions,
    /// The Invoke API and the asynchronous queue.
    pub invoke: crate::invoke::InvokeContext,
    /// One info line per request (`access_log`).
    pub access_log: bool,
    /// Calls in flight and the drain flag: the load headers on every answer and the agent.
    pub gauge: Arc<crate::balance::Gauge>,
}

/// Serves one request; never fails at the HTTP level (errors become JSON responses). Blocking
/// reads (`/stats`, the registry) run on the blocking pool.
pub async fn handle(
    state: Arc<ApiState>,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let call = call_of(&method, &path, req.uri().query(), req.headers());
    let span = tracing::info_span!(
        "request",
        function = call.as_ref().map(|c| c.0.as_str()),
        request_id = tracing::field::Empty,
    );
    let in_flight = call.as_ref().map(|_| state.gauge.enter());
    let run = crate::metrics::CALL_START.scope(std::cell::Cell::new(None), async {
        let result = execute(&state, req, peer).await;
        (
            result,
            crate::metrics::CALL_START.with(std::cell::Cell::get),
        )
    });
    let (result, start) = tracing::Instrument::instrument(run, span.clone()).await;
    let _entered = span.enter();
    let response = match result {
        Ok(resp) => resp,
        Err(err) => {
            if err.status().is_server_error() {
                tracing::warn!(%method, %path, error = %err, "request failed");
            } else {
                tracing::debug!(%method, %path, error = %err, "request rejected");
            }
            err.into_response()
        }
    };
    drop(in_flight);
    let mut response = response;
    state.gauge.stamp(response.headers_mut());
    let status = response.status().as_u16();
    if let Some((function, kind)) = &call {
        let metrics = state.manager.metrics();
        // A 404 that reached no sandbox names no function: it counts under `other` (unless
        // the name has its own entry), so made-up names cannot take the labels' places.
        let into = if status == 404 && start.is_none() {
            metrics
                .get(function.as_str())
                .unwrap_or_else(|| metrics.other())
        } else {
            metrics.of(function.as_str())
        };
        into.count(*kind, status);
    }
    if state.access_log {
        let start = match start {
            Some(true) => "cold",
            Some(false) => "warm",
            None => "-",
        };
        let ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        tracing::info!(%method, %path, status, duration_ms = ms, start, "access");
    }
    Ok(response)
}

/// The function and path kind of a request that calls a function (for `/metrics`), from its
/// method, path, query and headers; `None` for anything else (or a name that does not parse).
fn call_of(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &http::HeaderMap,
) -> Option<(LambdaName, crate::metrics::Kind)> {
    use crate::metrics::Kind;
    match route(method, path).ok()? {
        Action::Run(name) => Some((
            name,
            if is_async(query) {
                Kind::Async
            } else {
                Kind::Sync
            },
        )),
        Action::Http { name, .. } => Some((name, Kind::Http)),
        Action::Invoke { function, legacy } => {
            let event = headers
                .get("x-amz-invocation-type")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"Event"));
            let kind = if legacy || event {
                Kind::Async
            } else {
                Kind::Sync
            };
            Some((LambdaName::parse(invoked_name(&function)).ok()?, kind))
        }
        _ => None,
    }
}

/// The function's name in an Invoke API `FunctionName`: a name, `name:qualifier`, or an ARN
/// (`arn:aws:lambda:<region>:<account>:function:<name>[:qualifier]`).
fn invoked_name(function: &str) -> &str {
    let mut parts = function.split(':');
    if function.starts_with("arn:") {
        let mut after = parts.skip_while(|p| *p != "function");
        after.next();
        return after.next().unwrap_or(function);
    }
    parts.next().unwrap_or(function)
}

async fn execute(
    state: &Arc<ApiState>,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let action = route(req.method(), req.uri().path())?;
    match action {
        Action::Management(route) => {
            crate::management::serve(&state.functions, route, req, peer).await
        }
        Action::Status => {
            if state.manager.is_closing() {
                return Err(ApiError::Unavailable {
                    reason: Unavailable::ShuttingDown,
                });
            }
            if state.gauge.draining() {
                return Err(ApiError::Unavailable {
                    reason: Unavailable::Draining,
                });
            }
            Ok(text(StatusCode::OK, "ready"))
        }
        Action::Dashboard(asset) => Ok(crate::dashboard::serve(asset, req.headers())),
        Action::Metrics => {
            // Reads cgroup files and /proc/self: on the blocking pool.
            let format = crate::metrics::Format::from_accept(
                req.headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok()),
            );
            let state = Arc::clone(state);
            let text = tokio::task::spawn_blocking(move || crate::metrics::render(&state, format))
                .await
                .map_err(|e| ApiError::Internal {
                    message: format!("metrics task failed: {e}"),
                })?
                .map_err(|e| ApiError::Internal {
                    message: format!("cannot encode the metrics: {e}"),
                })?;
            let mut resp = Response::new(Full::new(Bytes::from(text)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(format.content_type()),
            );
            Ok(resp)
        }
        Action::Stats => {
            // Reads every sandbox's and zygote's cgroup: on the blocking pool.
            let state = Arc::clone(state);
            let stats = tokio::task::spawn_blocking(move || stats_json(&state))
                .await
                .map_err(|e| ApiError::Internal {
                    message: format!("stats task failed: {e}"),
                })?;
            Ok(json_response(StatusCode::OK, &stats))
        }
        Action::Invoke { function, legacy } => {
            Ok(crate::invoke::aws_invoke::serve(state, &function, legacy, req).await)
        }
        Action::Http { name, path } => {
            Ok(crate::http_function::serve(state, &name, &path, req, peer).await)
        }
        Action::Invocation(id) => Ok(crate::invoke::serve_record(state, &id).await),
        Action::Invocations => Ok(crate::invoke::serve_records(state, req.uri().query()).await),
        Action::Install(name) => {
            let installed = state.manager.install_packages(&name).await?;
            let body = json!({
                "function": name.as_str(),
                "has_requirements": installed.has_requirements,
                "packages": installed.packages,
                "took_ms": installed.took.as_millis() as u64,
            });
            Ok(json_response(StatusCode::OK, &body))
        }
        Action::Run(name) => {
            let started = Instant::now();
            let request_id = crate::invoke::caller_request_id(req.headers())?;
            let queued = is_async(req.uri().query());
            let result = if queued {
                run_async(state, &name, req, &request_id).await
            } else {
                run(state, &name, req, &request_id).await.map(|body| {
                    let mut resp = Response::new(Full::new(body));
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static("application/json"),
                    );
                    resp
                })
            };
            state
                .manager
                .timings()
                .record(Phase::Request, started.elapsed());
            let mut resp = match result {
                Ok(resp) => resp,
                Err(e) => {
                    log_error(&e, req_method_path(&name));
                    e.into_response()
                }
            };
            crate::invoke::add_request_id(resp.headers_mut(), &request_id);
            Ok(resp)
        }
    }
}

fn req_method_path(name: &LambdaName) -> String {
    format!("POST /runLambda/{name}")
}

pub(crate) fn log_error(err: &ApiError, what: String) {
    if err.status().is_server_error() {
        tracing::warn!(request = %what, error = %err, "request failed");
    } else {
        tracing::debug!(request = %what, error = %err, "request rejected");
    }
}

/// Whether `/runLambda/<name>` was asked to queue the call (`?async=1` or `?async=true`).
fn is_async(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|p| p == "async=1" || p == "async=true"))
}

/// Reads the event and runs the call.
async fn run(
    state: &ApiState,
    name: &LambdaName,
    req: Request<Incoming>,
    request_id: &RequestId,
) -> Result<Bytes, ApiError> {
    let t = Instant::now();
    let event = read_event(req, state.max_body_bytes, state.body_timeout).await?;
    state.manager.timings().record(Phase::ReadBody, t.elapsed());
    Ok(state.manager.run(name, event, request_id).await?)
}

/// Reads the event and queues it: 202 with `{"invocation_id", "status"}` and `Location`.
async fn run_async(
    state: &ApiState,
    name: &LambdaName,
    req: Request<Incoming>,
    request_id: &RequestId,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let limit = state.invoke.async_payload_bytes.min(state.max_body_bytes);
    let event = read_event(req, limit, state.body_timeout).await?;
    let Some(queue) = &state.invoke.queue else {
        return Err(ApiError::Internal {
            message: "this worker has no asynchronous queue".to_owned(),
        });
    };
    let record = queue.submit_run(name, event, request_id).await?;
    let body = json!({"invocation_id": record.id.to_string(), "status": "queued"});
    let mut resp = json_response(StatusCode::ACCEPTED, &body);
    if let Ok(v) = header::HeaderValue::from_str(&format!("/invocations/{}", record.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// Reads the body under the size limit and checks it is JSON (an empty body is `{}`).
async fn read_event(
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    // A declared length over the limit is refused before anything is read.
    let declared = crate::management::declared_length(&req);
    let bytes = crate::management::read_body(req.into_body(), declared, limit, timeout).await?;
    check_event(bytes)
}

/// An event as the runtime gets it: JSON nested at most [`MAX_EVENT_DEPTH`] deep; an empty
/// (or all-blank) body is `{}`.
pub(crate) fn check_event(bytes: Bytes) -> Result<Bytes, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Bytes::from_static(b"{}"));
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(|e| ApiError::BadJson {
        message: e.to_string(),
    })?;
    if nesting_depth(&bytes) > MAX_EVENT_DEPTH {
        return Err(ApiError::BadJson {
            message: format!("arrays and objects are nested more than {MAX_EVENT_DEPTH} deep"),
        });
    }
    Ok(bytes)
}

/// How deep an event's arrays and objects may nest. serde_json's `IgnoredAny` checks syntax
/// at any depth, but the runtime's parser recurses, and Python stops near 1 000 levels.
pub const MAX_EVENT_DEPTH: usize = 512;

/// The deepest nesting of arrays and objects in `json`, which must be valid JSON. One pass, no
/// allocation: brackets inside strings do not count.
fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn stats_json(state: &ApiState) -> serde_json::Value {
    let m = &state.manager;
    json!({
        "worker": {
            "pid": std::process::id(),
            "uptime_s": (state.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "cgroup_version": state.cgroup_version,
            "sandboxes_live": m.live_count(),
        },
        "sandboxes": m.live(),
        "lambdas": lambdas_json(m),
        "timings": m.timings().snapshot(),
        "packages": m.backend().package_stats(),
        "cache": m.cache_stats(),
        "import_cache": m.backend().import_cache_stats(),
        "user_namespaces": m.backend().user_namespace_stats(),
        "async": state
            .invoke
            .queue
            .as_ref()
            .and_then(|q| q.store().counts().ok())
            .map(|c| crate::invoke::counts_json(&c)),
    })
}

/// Each lambda's counters, with its call latency percentiles (`latency_ms`, cold and warm
/// calls together) when it has a label of its own in the metrics.
fn lambdas_json(m: &WorkerManager) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (name, stats) in m.lambda_stats() {
        let mut v = serde_json::to_value(stats).unwrap_or_default();
        if let (Some(f), Some(obj)) = (m.metrics().get(&name), v.as_object_mut()) {
            let h = f.cold.snapshot().merged(&f.warm.snapshot());
            let ms = |q: f64| h.quantile(q).map(|s| (s * 1e6).round() / 1e3);
            obj.insert(
                "latency_ms".to_owned(),
                json!({"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "count": h.count}),
            );
        }
        out.insert(name, v);
    }
    serde_json::Value::Object(out)
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    resp
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_depth_counts_brackets_outside_strings() {
        assert_eq!(nesting_depth(b"1"), 0);
        assert_eq!(nesting_depth(b"{}"), 1);
        assert_eq!(nesting_depth(br#"[{"a": [1, {"b": []}]}, []]"#), 5);
        assert_eq!(nesting_depth(br#"{"[[[[": "{{{{\"[["}"#), 1);
        assert_eq!(nesting_depth(br#"["\\", [["\\\""]]]"#), 3);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(nesting_depth(deep.as_bytes()), 100_000);
    }

    #[test]
    fn routes() {
        assert_eq!(route(&Method::GET, "/status").unwrap(), Action::Status);
        assert_eq!(route(&Method::GET, "/stats").unwrap(), Action::Stats);
        assert_eq!(route(&Method::GET, "/metrics").unwrap(), Action::Metrics);
        assert_eq!(route(&Method::POST, "/metrics").unwrap_err().status(), 405);
        assert_eq!(invoked_name("hello"), "hello");
        assert_eq!(invoked_name("hello:$LATEST"), "hello");
        assert_eq!(
            invoked_name("arn:aws:lambda:us-east-1:000000000000:function:hi:3"),
            "hi"
        );
        assert_eq!(
            route(&Method::POST, "/runLambda/hello").unwrap(),
            Action::Run(LambdaName::parse("hello").unwrap())
        );
        assert_eq!(
            route(&Method::GET, "/runLambda/hello")
                .unwrap_err()
                .status(),
            405
        );
        assert_eq!(route(&Method::POST, "/status").unwrap_err().status(), 405);
        assert_eq!(route(&Method::GET, "/nope").unwrap_err().status(), 404);
        for bad in [
            "/runLambda/",
            "/runLambda",
            "/runLambda/a/b",
            "/runLambda/..",
            "/runLambda/%2e%2e",
            "/runLambda/a%00",
        ] {
            assert_eq!(
                route(&Method::POST, bad).unwrap_err().status(),
                400,
                "{bad}"
            );
        }
        use crate::management::Route;
        let name = |n: &str| LambdaName::parse(n).unwrap();
        assert_eq!(
            route(&Method::GET, "/2015-03-31/functions/").unwrap(),
            Action::Management(Route::Aws)
        );
        assert_eq!(
            route(&Method::GET, "/registry/archives/abc").unwrap(),
            Action::Management(Route::Archive("abc".into()))
        );
        assert_eq!(
            route(&Method::GET, "/registry/functions/f").unwrap(),
            Action::Management(Route::Pull(name("f")))
        );
        assert_eq!(
            route(&Method::GET, "/functions/f/docs").unwrap(),
            Action::Management(Route::Docs {
                name: name("f"),
                yaml: false
            })
        );
        assert_eq!(
            route(&Method::GET, "/functions/f/docs.yml").unwrap(),
            Action::Management(Route::Docs {
                name: name("f"),
                yaml: true
            })
        );
        assert_eq!(
            route(&Method::GET, "/functions/../docs")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            route(&Method::GET, "/functions/f").unwrap_err().status(),
            404
        );
        let invoke = |f: &str, legacy: bool| Action::Invoke {
            function: f.to_owned(),
            legacy,
        };
        assert_eq!(
            route(&Method::POST, "/2015-03-31/functions/hello/invocations").unwrap(),
            invoke("hello", false)
        );
        assert_eq!(
            route(
                &Method::POST,
                "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Ahi/invocations"
            )
            .unwrap(),
            invoke("arn:aws:lambda:us-east-1:000000000000:function:hi", false)
        );
        assert_eq!(
            route(&Method::POST, "/2014-11-13/functions/hello/invoke-async/").unwrap(),
            invoke("hello", true)
        );
        // Not an invocation: the management API answers (and names what is wrong).
        for (method, path) in [
            (Method::GET, "/2015-03-31/functions/hello/invocations"),
            (Method::POST, "/2015-03-31/functions//invocations"),
            (Method::POST, "/2015-03-31/functions/a/b/invocations"),
            (Method::POST, "/2015-03-31/functions/%FF/invocations"),
        ] {
            assert_eq!(
                route(&method, path).unwrap(),
                Action::Management(Route::Aws),
                "{method} {path}"
            );
        }
        assert_eq!(
            route(&Method::GET, "/invocations/abc").unwrap(),
            Action::Invocation("abc".into())
        );
        assert_eq!(
            route(&Method::GET, "/invocations").unwrap(),
            Action::Invocations
        );
        assert_eq!(
            route(&Method::POST, "/invocations").unwrap_err().status(),
            405
        );
        assert_eq!(
            route(&Method::POST, "/functions/np/install").unwrap(),
            Action::Install(name("np"))
        );
        assert_eq!(
            route(&Method::GET, "/functions/np/install")
                .unwrap_err()
                .status(),
            405
        );
        assert_eq!(
            route(&Method::POST, "/functions/a%00/install")
                .unwrap_err()
                .status(),
            400
        );
        let http = |n: &str, p: &str| Action::Http {
            name: name(n),
            path: p.to_owned(),
        };
        assert_eq!(route(&Method::GET, "/run/web").unwrap(), http("web", "/"));
        assert_eq!(
            route(&Method::DELETE, "/run/web/").unwrap(),
            http("web", "/")
        );
        assert_eq!(
            route(&Method::PATCH, "/run/web/a/b%20c").unwrap(),
            http("web", "/a/b%20c")
        );
        for bad in ["/run/", "/run/..", "/run/a%00/x"] {
            assert_eq!(route(&Method::GET, bad).unwrap_err().status(), 400, "{bad}");
        }
        let long = format!("/runLambda/{}", "a".repeat(1000));
        assert_eq!(route(&Method::POST, &long).unwrap_err().status(), 400);
    }
}
