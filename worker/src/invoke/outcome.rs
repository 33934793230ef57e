//! What a failed call means to a caller of the Invoke API and to the asynchronous queue, in
//! one place: a function error (AWS answers 200 with `X-Amz-Function-Error: Unhandled` and
//! `{"errorMessage", "errorType", "stackTrace"}`), or an error of the request or the platform
//! (an AWS error code and status).
//!
//! | [`RunError`] | Invoke answer | asynchronous event |
//! |---|---|---|
//! | the handler (or its module) raised | 200, its type, message and stack | failed attempt |
//! | `timeout_s` passed | 200, `Sandbox.Timedout` | failed attempt |
//! | the sandbox ran out of memory | 200, `Runtime.OutOfMemory` | failed attempt |
//! | the sandbox died or broke the protocol | 200, `Runtime.ExitError` | failed attempt |
//! | the sandbox could not start | 200, `Runtime.StartError` | failed attempt |
//! | `requirements.txt` cannot be installed | 200, `Runtime.PackageInstallError` | failed attempt |
//! | `lambda.json` or the handler file is invalid | 200, `Runtime.ConfigError` | failed attempt |
//! | unknown function | 404 `ResourceNotFoundException` | dead letter at once |
//! | the lambda's slots and queue are full, or every sandbox is busy | 429 `TooManyRequestsException` | retried later, not counted |
//! | the event is not JSON | 400 `InvalidRequestContentException` | failed attempt |
//! | the worker shuts down, the registry server cannot be reached | 503 `ServiceException` | retried later, not counted |
//! | anything else of the worker | 500 `ServiceException` | retried later, not counted |

use http::StatusCode;

use crate::aws::AwsError;
use crate::manager::{RunError, Unavailable};
use crate::packages::PackageError;
use crate::registry::RegistryError;
use crate::runtime_client::RequestId;

/// How long a throttled caller is told to wait (`Retry-After`, seconds).
pub const RETRY_AFTER_S: u64 = 1;

/// A function error: what AWS's runtime reports for an unhandled error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionError {
    pub error_type: String,
    pub message: String,
    /// The traceback's frames, innermost last (`  File "...", line N, in f\n    code\n`).
    pub stack: Vec<String>,
}

impl FunctionError {
    /// The payload AWS answers with: `{"errorMessage", "errorType", "requestId", "stackTrace"}`.
    pub fn payload(&self, request_id: &RequestId) -> Vec<u8> {
        let value = serde_json::json!({
            "errorMessage": self.message,
            "errorType": self.error_type,
            "requestId": request_id.to_string(),
            "stackTrace": self.stack,
        });
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

/// What a failed call is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The function failed (answered 200 with `X-Amz-Function-Error`).
    Function(FunctionError),
    /// The function does not exist.
    NotFound(AwsError),
    /// The call could not start now: try again later (429 with `Retry-After`, or 503).
    Busy(AwsError),
    /// The caller's request is wrong.
    Request(AwsError),
    /// The worker failed.
    Platform(AwsError),
}

impl Failure {
    /// The AWS error to answer, for every kind but a function error.
    pub fn aws_error(&self) -> Option<&AwsError> {
        match self {
            Failure::Function(_) => None,
            Failure::NotFound(e)
            | Failure::Busy(e)
            | Failure::Request(e)
            | Failure::Platform(e) => Some(e),
        }
    }
}

fn function(error_type: &str, message: String) -> Failure {
    Failure::Function(FunctionError {
        error_type: error_type.to_owned(),
        message,
        stack: Vec::new(),
    })
}

fn too_many(message: String) -> Failure {
    Failure::Busy(AwsError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequestsException",
        message,
    ))
}

fn unavailable(message: String) -> Failure {
    Failure::Busy(AwsError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceException",
        message,
    ))
}

/// What `err`, the failure of call `request_id` of the function whose ARN is `arn`, is.
pub fn classify(err: &RunError, arn: &str, request_id: &RequestId) -> Failure {
    let text = err.to_string();
    match err {
        RunError::HandlerRaised {
            kind,
            message,
            traceback,
            ..
        } => Failure::Function(FunctionError {
            error_type: kind.clone(),
            message: message.clone(),
            stack: stack_frames(traceback),
        }),
        RunError::Timeout { timeout_s, .. } => function(
            "Sandbox.Timedout",
            format!("RequestId: {request_id} Error: Task timed out after {timeout_s}.00 seconds"),
        ),
        RunError::OutOfMemory { memory_mb, .. } => function(
            "Runtime.OutOfMemory",
            format!(
                "RequestId: {request_id} Error: Runtime exited: the sandbox ran out of memory \
                 (Memory Size: {memory_mb} MB) and was killed"
            ),
        ),
        RunError::SandboxFailed { .. } => function(
            "Runtime.ExitError",
            format!("RequestId: {request_id} Error: Runtime exited: {text}"),
        ),
        RunError::StartFailed { .. } => function(
            "Runtime.StartError",
            format!("RequestId: {request_id} Error: {text}"),
        ),
        RunError::Packages(PackageError::BadRequirements { .. } | PackageError::Install { .. }) => {
            function("Runtime.PackageInstallError", text)
        }
        RunError::LambdaConfig { .. }
        | RunError::Registry(
            RegistryError::Config { .. }
            | RegistryError::NoHandlerFile { .. }
            | RegistryError::BadHandler { .. },
        ) => function("Runtime.ConfigError", text),
        RunError::Registry(RegistryError::Unknown { .. }) => {
            Failure::NotFound(AwsError::not_found(format!("Function not found: {arn}")))
        }
        RunError::TooManyRequests { .. } => too_many(format!("Rate Exceeded. {text}")),
        RunError::Unavailable {
            reason:
                Unavailable::Full { .. }
                | Unavailable::TooManyConnections { .. }
                | Unavailable::GpuBusy { .. },
        } => too_many(format!("Rate Exceeded. {text}")),
        RunError::Unavailable {
            reason: Unavailable::ShuttingDown | Unavailable::Draining,
        }
        | RunError::Registry(RegistryError::Remote(_)) => unavailable(text),
        RunError::EventRefused { message } => Failure::Request(AwsError::bad_content(format!(
            "Could not parse request body into json: {message}"
        ))),
        RunError::Registry(RegistryError::OpenDir { .. })
        | RunError::Packages(PackageError::Store { .. } | PackageError::Pip { .. })
        | RunError::Task { .. } => Failure::Platform(AwsError::service(text)),
    }
}

/// A Python traceback's frames, as AWS's runtime lists them in `stackTrace`: each
/// `  File ...` line with the source line under it; the `Traceback` heading and the final
/// exception line are left out.
pub fn stack_frames(traceback: &str) -> Vec<String> {
    let mut frames: Vec<String> = Vec::new();
    for line in traceback.lines() {
        if line.starts_with("  File ") {
            frames.push(format!("{line}\n"));
        } else if line.starts_with("    ") {
            if let Some(last) = frames.last_mut() {
                last.push_str(line);
                last.push('\n');
            }
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:f";

    #[test]
    fn a_traceback_becomes_its_frames() {
        let tb = "Traceback (most recent call last):\n  File \"/handler/app.py\", line 3, in handler\n    raise ValueError('x')\nValueError: x\n";
        assert_eq!(
            stack_frames(tb),
            vec!["  File \"/handler/app.py\", line 3, in handler\n    raise ValueError('x')\n"]
        );
        assert!(stack_frames("no frames here").is_empty());
    }

    #[test]
    fn each_error_has_its_kind() {
        let id = RequestId::given("req-1").unwrap();
        let raised = RunError::HandlerRaised {
            lambda: "f".into(),
            kind: "ValueError".into(),
            message: "bad".into(),
            traceback: String::new(),
        };
        let Failure::Function(f) = classify(&raised, ARN, &id) else {
            panic!("a raise is a function error");
        };
        assert_eq!(
            (f.error_type.as_str(), f.message.as_str()),
            ("ValueError", "bad")
        );
        let payload: serde_json::Value = serde_json::from_slice(&f.payload(&id)).unwrap();
        assert_eq!(payload["errorType"], "ValueError");
        assert_eq!(payload["requestId"], "req-1");
        assert!(payload["stackTrace"].is_array());

        let timeout = RunError::Timeout {
            lambda: "f".into(),
            timeout_s: 3,
        };
        let Failure::Function(f) = classify(&timeout, ARN, &id) else {
            panic!("a timeout is a function error");
        };
        assert_eq!(f.error_type, "Sandbox.Timedout");
        assert!(
            f.message.contains("Task timed out after 3.00 seconds"),
            "{}",
            f.message
        );

        let unknown = RunError::Registry(RegistryError::Unknown { lambda: "f".into() });
        let e = classify(&unknown, ARN, &id);
        let aws = e.aws_error().unwrap();
        assert_eq!(
            (aws.status.as_u16(), aws.code),
            (404, "ResourceNotFoundException")
        );
        assert!(aws.message.contains(ARN));

        let throttled = RunError::TooManyRequests {
            lambda: "f".into(),
            max_concurrency: 1,
            queued: 0,
        };
        let e = classify(&throttled, ARN, &id);
        assert!(matches!(e, Failure::Busy(_)));
        assert_eq!(e.aws_error().unwrap().code, "TooManyRequestsException");

        let closing = RunError::shutting_down();
        let e = classify(&closing, ARN, &id);
        assert!(matches!(e, Failure::Busy(_)));
        assert_eq!(e.aws_error().unwrap().status.as_u16(), 503);

        let refused = RunError::EventRefused {
            message: "x".into(),
        };
        assert_eq!(
            classify(&refused, ARN, &id).aws_error().unwrap().code,
            "InvalidRequestContentException"
        );
    }
}
