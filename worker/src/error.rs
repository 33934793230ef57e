//! API errors and the one place that maps each to an HTTP status and a JSON body.
//!
//! Every error body is a JSON object `{"error": "<what>", ...}` with fields naming the lambda,
//! path or limit involved.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use crate::manager::{RunError, Unavailable};
use crate::packages::PackageError;
use crate::registry::RegistryError;

/// Everything a request can fail with: the HTTP layer's own cases, and the manager's.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such endpoint: {path}")]
    NotFound { path: String },
    #[error("method {method} not allowed on {path}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: std::borrow::Cow<'static, str>,
    },
    #[error("invalid lambda name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("request body is not valid JSON: {message}")]
    BadJson { message: String },
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("cannot read the request body: {message}")]
    BodyRead { message: String },
    #[error("the request body did not arrive within {timeout_s} s")]
    BodyTimeout { timeout_s: u64 },
    #[error("worker unavailable: {reason}")]
    Unavailable { reason: Unavailable },
    #[error("internal error: {message}")]
    Internal { message: String },
    #[error("registry server {server} unreachable: {message}")]
    Upstream { server: String, message: String },
    #[error(transparent)]
    InvalidRequestId(#[from] crate::runtime_client::InvalidRequestId),
    #[error(transparent)]
    Queue(#[from] crate::invoke::SubmitError),
    #[error("bad query: {message}")]
    BadQuery { message: String },
    #[error("no invocation {id} on this worker")]
    InvocationNotFound { id: String },
    #[error("lambda {lambda} gave an answer that is not an HTTP response: {message}")]
    BadAnswer { lambda: String, message: String },
    #[error(transparent)]
    Run(#[from] RunError),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::InvalidName { .. } | ApiError::BadJson { .. } | ApiError::BodyRead { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Upstream { .. } | ApiError::BadAnswer { .. } => StatusCode::BAD_GATEWAY,
            ApiError::InvalidRequestId(_) => StatusCode::BAD_REQUEST,
            ApiError::Queue(e) => e.status(),
            ApiError::InvocationNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::BadQuery { .. } => StatusCode::BAD_REQUEST,
            ApiError::Run(e) => run_status(e),
        }
    }

    /// The JSON body: `error` is a short machine-friendly kind, `message` the full sentence.
    pub fn body(&self) -> Value {
        let message = self.to_string();
        match self {
            ApiError::NotFound { path } => {
                json!({"error": "not found", "message": message, "path": path})
            }
            ApiError::MethodNotAllowed {
                method,
                path,
                allow,
            } => {
                json!({"error": "method not allowed", "message": message, "method": method, "path": path, "allow": allow})
            }
            ApiError::InvalidName { name, reason } => {
                json!({"error": "invalid lambda name", "message": message, "name": name, "reason": reason})
            }
            ApiError::BadJson { .. } => json!({"error": "invalid JSON", "message": message}),
            ApiError::BodyTooLarge { limit } => {
                json!({"error": "body too large", "message": message, "limit_bytes": limit})
            }
            ApiError::BodyRead { .. } => json!({"error": "bad request body", "message": message}),
            ApiError::BodyTimeout { timeout_s } => {
                json!({"error": "body timeout", "message": message, "timeout_s": timeout_s})
            }
            ApiError::Unavailable { .. } => json!({"error": "unavailable", "message": message}),
            ApiError::Internal { .. } => json!({"error": "internal", "message": message}),
            ApiError::Upstream { server, .. } => {
                json!({"error": "registry unavailable", "message": message, "server": server})
            }
            ApiError::InvalidRequestId(_) => {
                json!({"error": "invalid request id", "message": message})
            }
            ApiError::Queue(e) => json!({"error": e.kind(), "message": message}),
            ApiError::BadQuery { .. } => json!({"error": "bad query", "message": message}),
            ApiError::InvocationNotFound { id } => {
                json!({"error": "invocation not found", "message": message, "id": id})
            }
            ApiError::BadAnswer { lambda, .. } => {
                json!({"error": "invalid HTTP answer", "message": message, "lambda": lambda})
            }
            ApiError::Run(e) => run_body(e, message),
        }
    }

    /// The complete HTTP response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut builder = Response::builder()
            .status(self.status())
            .header(header::CONTENT_TYPE, "application/json");
        if let ApiError::MethodNotAllowed { allow, .. } = &self {
            builder = builder.header(header::ALLOW, allow.as_ref());
        }
        if self.status() == StatusCode::TOO_MANY_REQUESTS {
            builder = builder.header(header::RETRY_AFTER, "1");
        }
        let mut body = self.body().to_string();
        body.push('\n');
        builder
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| {
                Response::new(Full::new(Bytes::from_static(
                    b"{\"error\": \"internal\"}\n",
                )))
            })
    }
}

/// The status of a failed call.
fn run_status(e: &RunError) -> StatusCode {
    match e {
        RunError::Registry(RegistryError::Unknown { .. } | RegistryError::NoHandlerFile { .. }) => {
            StatusCode::NOT_FOUND
        }
        RunError::Registry(RegistryError::BadHandler { .. } | RegistryError::OpenDir { .. }) => {
            StatusCode::FORBIDDEN
        }
        RunError::LambdaConfig { .. }
        | RunError::Registry(RegistryError::Config { .. })
        | RunError::EventRefused { .. }
        | RunError::Packages(PackageError::BadRequirements { .. }) => StatusCode::BAD_REQUEST,
        RunError::Packages(PackageError::Install { .. }) => StatusCode::FAILED_DEPENDENCY,
        RunError::Packages(PackageError::Store { .. } | PackageError::Pip { .. })
        | RunError::HandlerRaised { .. }
        | RunError::Task { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        RunError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        RunError::StartFailed { .. }
        | RunError::SandboxFailed { .. }
        | RunError::OutOfMemory { .. } => StatusCode::BAD_GATEWAY,
        RunError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        RunError::Unavailable { .. } | RunError::Registry(RegistryError::Remote(_)) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// The body of a failed call; `message` is the error's sentence.
fn run_body(e: &RunError, message: String) -> Value {
    match e {
        RunError::Registry(RegistryError::Unknown { lambda }) => {
            json!({"error": "unknown lambda", "message": message, "lambda": lambda})
        }
        RunError::Registry(RegistryError::NoHandlerFile { lambda, path }) => {
            json!({"error": "unknown lambda", "message": message, "lambda": lambda, "path": path})
        }
        RunError::Registry(RegistryError::BadHandler { lambda, .. }) => {
            json!({"error": "bad handler", "message": message, "lambda": lambda})
        }
        RunError::Registry(RegistryError::OpenDir { .. }) => {
            json!({"error": "bad handler", "message": message})
        }
        RunError::Registry(RegistryError::Remote(_)) => {
            json!({"error": "registry unavailable", "message": message})
        }
        RunError::Packages(PackageError::BadRequirements { lambda, path, .. }) => {
            json!({"error": "invalid requirements", "message": message, "lambda": lambda, "path": path})
        }
        RunError::Packages(PackageError::Install {
            lambda,
            package,
            message: detail,
        }) => json!({
            "error": "package install failed",
            "message": message,
            "lambda": lambda,
            "package": package,
            "pip": detail,
        }),
        RunError::Packages(PackageError::Store { .. } | PackageError::Pip { .. }) => {
            json!({"error": "internal", "message": format!("internal error: {message}")})
        }
        RunError::Task { .. } => json!({"error": "internal", "message": message}),
        RunError::LambdaConfig { lambda, source } => config_body(lambda, source, message),
        RunError::Registry(RegistryError::Config { lambda, source }) => {
            config_body(lambda, source, message)
        }
        RunError::TooManyRequests {
            lambda,
            max_concurrency,
            queued,
        } => json!({
            "error": "too many requests",
            "message": message,
            "lambda": lambda,
            "max_concurrency": max_concurrency,
            "queued": queued,
            "retry_after_s": 1,
        }),
        RunError::EventRefused { .. } => json!({"error": "invalid JSON", "message": message}),
        RunError::HandlerRaised {
            lambda,
            kind,
            message: exc_message,
            traceback,
        } => json!({
            "error": "handler raised an exception",
            "message": message,
            "lambda": lambda,
            "type": kind,
            "exception": exc_message,
            "traceback": traceback,
        }),
        RunError::StartFailed { lambda, .. } | RunError::SandboxFailed { lambda, .. } => {
            json!({"error": "sandbox failed", "message": message, "lambda": lambda})
        }
        RunError::OutOfMemory { lambda, memory_mb } => {
            json!({"error": "out of memory", "message": message, "lambda": lambda, "memory_mb": memory_mb})
        }
        RunError::Timeout { lambda, timeout_s } => {
            json!({"error": "timeout", "message": message, "lambda": lambda, "timeout_s": timeout_s})
        }
        RunError::Unavailable { .. } => json!({"error": "unavailable", "message": message}),
    }
}

/// The body of a call refused for its `lambda.json`.
fn config_body(
    lambda: &str,
    source: &crate::lambda_config::LambdaConfigError,
    message: String,
) -> Value {
    json!({
        "error": "invalid lambda config",
        "message": message,
        "lambda": lambda,
        "path": source.path,
        "key": source.key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(e: RunError) -> ApiError {
        ApiError::Run(e)
    }

    #[test]
    fn limits_errors_name_the_key_and_say_when_to_retry() {
        let e = run(RunError::TooManyRequests {
            lambda: "one".into(),
            max_concurrency: 2,
            queued: 8,
        });
        let resp = e.into_response();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let source = crate::lambda_config::LambdaConfigError {
            path: "/r/x/lambda.json".into(),
            key: Some("memory_mb".into()),
            message: "must be a multiple of 64, not 200".into(),
        };
        let e = run(RunError::LambdaConfig {
            lambda: "x".into(),
            source,
        });
        assert_eq!(e.status(), 400);
        let body = e.body();
        assert_eq!(body["key"], "memory_mb");
        assert_eq!(body["path"], "/r/x/lambda.json");
        assert_eq!(
            body["message"],
            "lambda x has an invalid /r/x/lambda.json: key \"memory_mb\": must be a multiple of 64, not 200"
        );
    }

    #[test]
    fn statuses_and_bodies() {
        let cases = [
            (
                run(RunError::Registry(RegistryError::Unknown {
                    lambda: "x".into(),
                })),
                404,
                "unknown lambda",
            ),
            (
                run(RunError::Registry(RegistryError::NoHandlerFile {
                    lambda: "x".into(),
                    path: "/r/x/lambda_func.py".into(),
                })),
                404,
                "unknown lambda",
            ),
            (
                run(RunError::Registry(RegistryError::BadHandler {
                    lambda: "x".into(),
                    message: "a link".into(),
                })),
                403,
                "bad handler",
            ),
            (
                ApiError::InvalidName {
                    name: "a/b".into(),
                    reason: "r",
                },
                400,
                "invalid lambda name",
            ),
            (
                ApiError::BadJson {
                    message: "m".into(),
                },
                400,
                "invalid JSON",
            ),
            (
                run(RunError::EventRefused {
                    message: "m".into(),
                }),
                400,
                "invalid JSON",
            ),
            (
                run(RunError::HandlerRaised {
                    lambda: "x".into(),
                    kind: "ValueError".into(),
                    message: "boom".into(),
                    traceback: "tb".into(),
                }),
                500,
                "handler raised an exception",
            ),
            (
                run(RunError::SandboxFailed {
                    lambda: "x".into(),
                    id: 3,
                    pid: 42,
                    source: crate::runtime_client::WireError::Closed,
                    stderr: "Traceback".into(),
                }),
                502,
                "sandbox failed",
            ),
            (
                run(RunError::OutOfMemory {
                    lambda: "x".into(),
                    memory_mb: 128,
                }),
                502,
                "out of memory",
            ),
            (
                run(RunError::Timeout {
                    lambda: "x".into(),
                    timeout_s: 3,
                }),
                504,
                "timeout",
            ),
            (
                run(RunError::Unavailable {
                    reason: Unavailable::Full {
                        handler_cache_size: 4,
                    },
                }),
                503,
                "unavailable",
            ),
            (ApiError::BodyTooLarge { limit: 10 }, 413, "body too large"),
            (ApiError::BodyTimeout { timeout_s: 30 }, 408, "body timeout"),
            (
                run(RunError::Packages(PackageError::BadRequirements {
                    lambda: "x".into(),
                    path: "requirements.txt".into(),
                    message: "line 2".into(),
                })),
                400,
                "invalid requirements",
            ),
            (
                run(RunError::Packages(PackageError::Install {
                    lambda: "x".into(),
                    package: "nope==1".into(),
                    message: "no matching distribution".into(),
                })),
                424,
                "package install failed",
            ),
            (
                run(RunError::Packages(PackageError::Store {
                    what: "create",
                    path: "/p/.locks".into(),
                    message: "read-only file system".into(),
                })),
                500,
                "internal",
            ),
        ];
        for (err, status, kind) in cases {
            assert_eq!(err.status().as_u16(), status, "{err}");
            assert_eq!(err.body()["error"], kind);
            assert!(err.body()["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
    }

    #[test]
    fn messages_name_what_failed() {
        let e = run(RunError::SandboxFailed {
            lambda: "x".into(),
            id: 3,
            pid: 42,
            source: crate::runtime_client::WireError::Closed,
            stderr: "  Traceback: boom\n".into(),
        });
        assert_eq!(
            e.to_string(),
            "sandbox of x failed: the sandbox closed the connection (sandbox 3 pid 42); stderr: Traceback: boom"
        );
        let e = run(RunError::Packages(PackageError::Store {
            what: "create",
            path: "/p/.locks".into(),
            message: "read-only file system".into(),
        }));
        assert_eq!(
            e.body()["message"],
            "internal error: packages: cannot create /p/.locks: read-only file system"
        );
    }

    #[test]
    fn method_not_allowed_sets_allow() {
        let resp = ApiError::MethodNotAllowed {
            method: "GET".into(),
            path: "/runLambda/x".into(),
            allow: "POST".into(),
        }
        .into_response();
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()[header::ALLOW], "POST");
    }
}
