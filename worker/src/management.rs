//! The management side of the HTTP servers, shared by every worker and the registry server:
//! the AWS Lambda management API ([`crate::aws`]) over hyper, the archive downloads its
//! `GetFunction` points to, a function's documentation, and the pull protocol workers in
//! registry mode use ([`crate::registry::Remote`]):
//!
//! - `GET /registry/functions/<name>`: `{"name", "revision_id", "version", "code_sha256",
//!   "config": <effective lambda.json>, "layers": [{"name", "version", "code_sha256"}]}`, and
//!   the rest of the function's record ([`crate::functions::FunctionRecord`]: `settings`,
//!   `entry`, `code_size`, `last_modified_ms`, `has_docs`) for `admin`;
//! - `GET /registry/archives/<sha256>`: an archive as uploaded.
//!
//! A worker in registry mode forwards management requests, archive downloads and docs to the
//! server unchanged (the `Host` header included, so a SigV4 signature still verifies there).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::json;

use crate::aws::{AwsRequest, AwsResponse, LambdaApi};
use crate::error::ApiError;
use crate::functions::{DirStore, FunctionStore, StoreError};
use crate::http_client;
use crate::name::LambdaName;

/// Largest management request body: AWS's limit for CreateFunction (a 50 MB archive, base64
/// in JSON, and its other members).
pub const MAX_MANAGEMENT_BODY: usize = crate::aws::MAX_REQUEST_BYTES;
/// How long a management request's body may take to arrive.
pub const MANAGEMENT_BODY_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a server's functions live.
#[derive(Debug, Clone)]
pub enum Functions {
    /// A registry directory this process writes (the registry server, a worker in local mode).
    Local {
        api: Arc<LambdaApi>,
        store: Arc<DirStore>,
    },
    /// A registry server this worker forwards to.
    Forward { host: String, port: u16 },
}

/// What a management path asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// The AWS Lambda API.
    Aws,
    /// `GET /registry/archives/<sha256>`.
    Archive(String),
    /// `GET /registry/functions/<name>`.
    Pull(LambdaName),
    /// `GET /functions/<name>/docs` (HTML) or `/functions/<name>/docs.yml`.
    Docs { name: LambdaName, yaml: bool },
}

/// The management route of `path`, if it is one.
pub fn route(path: &str) -> Option<Result<Route, ApiError>> {
    if crate::aws::is_api_path(path) {
        return Some(Ok(Route::Aws));
    }
    let name = |raw: &str| {
        LambdaName::parse(raw).map_err(|reason| ApiError::InvalidName {
            name: raw.chars().take(200).collect(),
            reason,
        })
    };
    if let Some(sha) = path.strip_prefix("/registry/archives/") {
        return Some(Ok(Route::Archive(sha.to_owned())));
    }
    if let Some(raw) = path.strip_prefix("/registry/functions/") {
        return Some(name(raw).map(Route::Pull));
    }
    let rest = path.strip_prefix("/functions/")?;
    let (raw, yaml) = if let Some(raw) = rest.strip_suffix("/docs") {
        (raw, false)
    } else {
        (rest.strip_suffix("/docs.yml")?, true)
    };
    Some(name(raw).map(|name| Route::Docs { name, yaml }))
}

/// Reads a request body under `limit` bytes and `timeout` (a declared length over the limit
/// is refused before anything is read). The HTTP API's one body reader.
pub async fn read_body(
    body: Incoming,
    declared: Option<u64>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let collect = Limited::new(body, limit).collect();
    let body = tokio::time::timeout(timeout, collect)
        .await
        .map_err(|_| ApiError::BodyTimeout {
            timeout_s: timeout.as_secs(),
        })?
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::BodyTooLarge { limit }
            } else {
                ApiError::BodyRead {
                    message: e.to_string(),
                }
            }
        })?;
    Ok(body.to_bytes())
}

/// The declared `Content-Length` of a request.
pub fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Serves a management route for a server whose functions are `functions`.
pub async fn serve(
    functions: &Functions,
    route: Route,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, ApiError> {
    match (functions, route) {
        (
            Functions::Forward { host, port },
            Route::Aws | Route::Archive(_) | Route::Docs { .. },
        ) => forward(host, *port, req).await,
        (Functions::Local { api, .. }, Route::Aws) => {
            let declared = declared_length(&req);
            let (parts, body) = req.into_parts();
            let aws = match read_body(body, declared, MAX_MANAGEMENT_BODY, MANAGEMENT_BODY_TIMEOUT)
                .await
            {
                Ok(body) => AwsRequest {
                    method: parts.method,
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().map(str::to_owned),
                    headers: parts.headers,
                    body,
                    peer_is_loopback: peer.ip().is_loopback(),
                },
                Err(ApiError::BodyTooLarge { .. }) => {
                    return Ok(aws_response(AwsResponse::too_large(parts.uri.path())))
                }
                Err(e) => return Err(e),
            };
            let api = Arc::clone(api);
            let resp = blocking("management request", move || {
                api.handle(&aws, SystemTime::now())
            })
            .await?;
            Ok(aws_response(resp))
        }
        (Functions::Local { store, .. }, Route::Archive(sha)) => {
            let store = Arc::clone(store);
            blocking("archive download", move || archive(&store, &sha)).await?
        }
        (Functions::Local { store, .. }, Route::Pull(name)) => {
            let store = Arc::clone(store);
            blocking("pull", move || pull(store.as_ref(), &name)).await?
        }
        (Functions::Forward { .. }, Route::Pull(name)) => Err(ApiError::NotFound {
            path: format!("/registry/functions/{name} (this worker is not the registry server)"),
        }),
        (Functions::Local { store, .. }, Route::Docs { name, yaml }) => {
            let dir = store.registry_dir().join(name.as_str());
            blocking("docs", move || docs(&dir, &name, yaml)).await?
        }
    }
}

async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal {
            message: format!("{what} task failed: {e}"),
        })
}

/// An [`AwsResponse`] as hyper's.
pub fn aws_response(resp: AwsResponse) -> Response<Full<Bytes>> {
    let mut out = Response::new(Full::new(Bytes::from(resp.body)));
    *out.status_mut() = resp.status;
    for (name, value) in resp.headers {
        out.headers_mut().append(name, value);
    }
    out
}

/// `GET /registry/archives/<sha256>` from the store.
fn archive(store: &DirStore, sha: &str) -> Result<Response<Full<Bytes>>, ApiError> {
    let path = store.archive_path(sha).map_err(|_| ApiError::NotFound {
        path: format!(
            "/registry/archives/{}",
            sha.chars().take(80).collect::<String>()
        ),
    })?;
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ApiError::NotFound {
            path: format!("/registry/archives/{sha}"),
        },
        _ => ApiError::Internal {
            message: format!("cannot read {}: {e}", path.display()),
        },
    })?;
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

/// The pull description of a function (see the module docs).
pub fn pull_json(
    store: &dyn FunctionStore,
    name: &LambdaName,
) -> Result<serde_json::Value, StoreError> {
    let info = store.get(name)?;
    let mut layers = Vec::new();
    for layer in info.config.layers.iter().flatten() {
        let versions = store.layer_versions(&layer.name)?;
        let found = match layer.version {
            Some(v) => versions.iter().find(|l| l.version == v),
            None => versions.last(),
        };
        let Some(found) = found else {
            return Err(StoreError::LayerNotFound {
                name: layer.name.to_string(),
                version: layer.version,
            });
        };
        layers.push(json!({"name": found.name.as_str(), "version": found.version, "code_sha256": found.code_sha256}));
    }
    Ok(json!({
        "name": info.name.as_str(),
        "revision_id": info.revision_id,
        "version": info.version,
        "code_sha256": info.code_sha256,
        "config": info.config.to_value(),
        "layers": layers,
        "settings": info.settings.to_value(),
        "entry": info.entry.to_string(),
        "code_size": info.code_size,
        "last_modified_ms": info.last_modified_ms,
        "has_docs": info.has_docs,
    }))
}

fn pull(store: &dyn FunctionStore, name: &LambdaName) -> Result<Response<Full<Bytes>>, ApiError> {
    match pull_json(store, name) {
        Ok(value) => Ok(json_response(StatusCode::OK, &value)),
        Err(StoreError::FunctionNotFound { .. }) => Err(ApiError::NotFound {
            path: format!("/registry/functions/{name}"),
        }),
        Err(e) => Err(ApiError::Internal {
            message: format!("function {name}: {e}"),
        }),
    }
}

/// `docs/lambda.html` or `docs/lambda.yml` of the function in `dir`.
pub fn docs(dir: &Path, name: &LambdaName, yaml: bool) -> Result<Response<Full<Bytes>>, ApiError> {
    let (file, content_type) = if yaml {
        ("lambda.yml", "application/yaml")
    } else {
        ("lambda.html", "text/html; charset=utf-8")
    };
    let path = dir.join("docs").join(file);
    let not_found = || ApiError::NotFound {
        path: format!(
            "/functions/{name}/{} (the function has no docs/{file})",
            if yaml { "docs.yml" } else { "docs" }
        ),
    };
    let text = crate::files::read_regular_file(&path, 4 * 1024 * 1024)
        .map_err(|e| ApiError::Internal {
            message: e.to_string(),
        })?
        .ok_or_else(not_found)?;
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(resp)
}

/// Sends `req` on to the registry server and answers what it answered.
async fn forward(
    host: &str,
    port: u16,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let declared = declared_length(&req);
    let (parts, body) = req.into_parts();
    let body = read_body(body, declared, MAX_MANAGEMENT_BODY, MANAGEMENT_BODY_TIMEOUT).await?;
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let mut out =
        http_client::Request::new(parts.method, host, port, &path, MANAGEMENT_BODY_TIMEOUT);
    out.headers = parts.headers;
    out.headers.remove(header::CONNECTION);
    out.body = body;
    out.limit = MAX_MANAGEMENT_BODY;
    let answer = http_client::send(out)
        .await
        .map_err(|e| ApiError::Upstream {
            server: format!("http://{host}:{port}"),
            message: http_client::describe_error(&e),
        })?;
    let mut resp = Response::new(Full::new(answer.bytes));
    *resp.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (name, value) in &answer.headers {
        if name != header::CONNECTION
            && name != header::TRANSFER_ENCODING
            && name != header::CONTENT_LENGTH
        {
            resp.headers_mut().append(name, value.clone());
        }
    }
    Ok(resp)
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
