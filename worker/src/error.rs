//! API errors and the one place that maps each to an HTTP status and a JSON body.
//!
//! Every error body is a JSON object `{"error": "<what>", ...}` with fields naming the lambda,
//! path or limit involved.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such endpoint: {path}")]
    NotFound { path: String },
    #[error("method {method} not allowed on {path}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: &'static str,
    },
    #[error("invalid lambda name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("unknown lambda {lambda}")]
    UnknownLambda { lambda: String },
    #[error("lambda {lambda} has no handler file {path}")]
    NoHandlerFile { lambda: String, path: String },
    #[error("lambda {lambda} cannot be served: {message}")]
    BadHandler { lambda: String, message: String },
    #[error("lambda {lambda} has an invalid {path}: {message}")]
    BadRequirements {
        lambda: String,
        path: String,
        message: String,
    },
    #[error("lambda {lambda} needs {package}, which could not be installed: {message}")]
    PackageInstall {
        lambda: String,
        package: String,
        message: String,
    },
    #[error("lambda {lambda} has an invalid {path}: {source}")]
    BadLambdaConfig {
        lambda: String,
        path: String,
        source: crate::lambda_config::LambdaConfigError,
    },
    #[error(
        "lambda {lambda} has {max_concurrency} calls running and {queued} waiting: try again later"
    )]
    TooManyRequests {
        lambda: String,
        max_concurrency: usize,
        queued: usize,
    },
    #[error("request body is not valid JSON: {message}")]
    BadJson { message: String },
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("cannot read the request body: {message}")]
    BodyRead { message: String },
    #[error("the request body did not arrive within {timeout_s} s")]
    BodyTimeout { timeout_s: u64 },
    #[error("handler of {lambda} raised {kind}: {message}")]
    HandlerRaised {
        lambda: String,
        kind: String,
        message: String,
        traceback: String,
    },
    #[error("sandbox of {lambda} failed: {message}")]
    SandboxFailed { lambda: String, message: String },
    #[error("the sandbox of {lambda} ran out of memory (memory_mb {memory_mb}) and was killed")]
    OutOfMemory { lambda: String, memory_mb: u64 },
    #[error("lambda {lambda} timed out after {timeout_s} s")]
    Timeout { lambda: String, timeout_s: u64 },
    #[error("worker unavailable: {message}")]
    Unavailable { message: String },
    #[error("internal error: {message}")]
    Internal { message: String },
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. }
            | ApiError::UnknownLambda { .. }
            | ApiError::NoHandlerFile { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::InvalidName { .. }
            | ApiError::BadJson { .. }
            | ApiError::BodyRead { .. }
            | ApiError::BadRequirements { .. }
            | ApiError::BadLambdaConfig { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PackageInstall { .. } => StatusCode::FAILED_DEPENDENCY,
            ApiError::BadHandler { .. } => StatusCode::FORBIDDEN,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::HandlerRaised { .. } | ApiError::Internal { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::SandboxFailed { .. } | ApiError::OutOfMemory { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ApiError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
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
            ApiError::UnknownLambda { lambda } => {
                json!({"error": "unknown lambda", "message": message, "lambda": lambda})
            }
            ApiError::NoHandlerFile { lambda, path } => {
                json!({"error": "unknown lambda", "message": message, "lambda": lambda, "path": path})
            }
            ApiError::BadHandler { lambda, .. } => {
                json!({"error": "bad handler", "message": message, "lambda": lambda})
            }
            ApiError::BadRequirements { lambda, path, .. } => {
                json!({"error": "invalid requirements", "message": message, "lambda": lambda, "path": path})
            }
            ApiError::PackageInstall {
                lambda,
                package,
                message: detail,
            } => json!({
                "error": "package install failed",
                "message": message,
                "lambda": lambda,
                "package": package,
                "pip": detail,
            }),
            ApiError::BadLambdaConfig {
                lambda,
                path,
                source,
            } => json!({
                "error": "invalid lambda config",
                "message": message,
                "lambda": lambda,
                "path": path,
                "key": source.key,
            }),
            ApiError::TooManyRequests {
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
            ApiError::BadJson { .. } => json!({"error": "invalid JSON", "message": message}),
            ApiError::BodyTooLarge { limit } => {
                json!({"error": "body too large", "message": message, "limit_bytes": limit})
            }
            ApiError::BodyRead { .. } => json!({"error": "bad request body", "message": message}),
            ApiError::BodyTimeout { timeout_s } => {
                json!({"error": "body timeout", "message": message, "timeout_s": timeout_s})
            }
            ApiError::HandlerRaised {
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
            ApiError::SandboxFailed { lambda, .. } => {
                json!({"error": "sandbox failed", "message": message, "lambda": lambda})
            }
            ApiError::OutOfMemory { lambda, memory_mb } => {
                json!({"error": "out of memory", "message": message, "lambda": lambda, "memory_mb": memory_mb})
            }
            ApiError::Timeout { lambda, timeout_s } => {
                json!({"error": "timeout", "message": message, "lambda": lambda, "timeout_s": timeout_s})
            }
            ApiError::Unavailable { .. } => json!({"error": "unavailable", "message": message}),
            ApiError::Internal { .. } => json!({"error": "internal", "message": message}),
        }
    }

    /// The complete HTTP response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut builder = Response::builder()
            .status(self.status())
            .header(header::CONTENT_TYPE, "application/json");
        if let ApiError::MethodNotAllowed { allow, .. } = &self {
            builder = builder.header(header::ALLOW, *allow);
        }
        if let ApiError::TooManyRequests { .. } = &self {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_errors_name_the_key_and_say_when_to_retry() {
        let e = ApiError::TooManyRequests {
            lambda: "one".into(),
            max_concurrency: 2,
            queued: 8,
        };
        let resp = e.into_response();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let source = crate::lambda_config::LambdaConfigError {
            path: "/r/x/lambda.json".into(),
            key: Some("memory_mb".into()),
            message: "must be a multiple of 64, not 200".into(),
        };
        let e = ApiError::BadLambdaConfig {
            lambda: "x".into(),
            path: "/r/x/lambda.json".into(),
            source,
        };
        assert_eq!(e.status(), 400);
        let body = e.body();
        assert_eq!(body["key"], "memory_mb");
        assert_eq!(
            body["message"],
            "lambda x has an invalid /r/x/lambda.json: key \"memory_mb\": must be a multiple of 64, not 200"
        );
    }

    #[test]
    fn statuses_and_bodies() {
        let cases = [
            (
                ApiError::UnknownLambda { lambda: "x".into() },
                404,
                "unknown lambda",
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
                ApiError::HandlerRaised {
                    lambda: "x".into(),
                    kind: "ValueError".into(),
                    message: "boom".into(),
                    traceback: "tb".into(),
                },
                500,
                "handler raised an exception",
            ),
            (
                ApiError::SandboxFailed {
                    lambda: "x".into(),
                    message: "died".into(),
                },
                502,
                "sandbox failed",
            ),
            (
                ApiError::Timeout {
                    lambda: "x".into(),
                    timeout_s: 3,
                },
                504,
                "timeout",
            ),
            (ApiError::BodyTooLarge { limit: 10 }, 413, "body too large"),
            (ApiError::BodyTimeout { timeout_s: 30 }, 408, "body timeout"),
            (
                ApiError::BadRequirements {
                    lambda: "x".into(),
                    path: "requirements.txt".into(),
                    message: "line 2".into(),
                },
                400,
                "invalid requirements",
            ),
            (
                ApiError::PackageInstall {
                    lambda: "x".into(),
                    package: "nope==1".into(),
                    message: "no matching distribution".into(),
                },
                424,
                "package install failed",
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
    fn method_not_allowed_sets_allow() {
        let resp = ApiError::MethodNotAllowed {
            method: "GET".into(),
            path: "/runLambda/x".into(),
            allow: "POST",
        }
        .into_response();
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()[header::ALLOW], "POST");
    }
}
