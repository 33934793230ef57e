//! Every error of the management API as AWS shapes it, in this one place: a status, the code in
//! the `x-amzn-ErrorType` header (where botocore's rest-json parser reads it), and a body
//! `{"Type": "User", "message": "..."}` (`"Message"` for the codes whose model spells it so,
//! `"Type": "Service"` for a 5xx).

use http::StatusCode;

use super::sigv4::AuthError;
use crate::functions::StoreError;

/// One error answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} ({status}): {message}")]
pub struct AwsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// The code of an operation this platform does not implement.
pub const UNSUPPORTED: &str = "UnsupportedOperationException";

impl AwsError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `InvalidParameterValueException`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            message,
        )
    }

    /// 400 `InvalidRequestContentException` (a body that is not the JSON the operation takes).
    pub fn bad_content(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            message,
        )
    }

    /// 404 `ResourceNotFoundException`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }

    /// 500 `ServiceException`.
    pub fn service(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            message,
        )
    }

    /// 403 for a change refused before anything was looked at.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 413 `RequestEntityTooLargeException`.
    pub fn too_large(limit: usize, operation: &str) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            format!("Request must be smaller than {limit} bytes for the {operation} operation"),
        )
    }

    /// 501 for an operation of the Lambda API this platform does not implement.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, UNSUPPORTED, message)
    }

    /// The store's error, with `arn` naming the function or layer it was about.
    pub fn from_store(e: StoreError, arn: &str) -> Self {
        match e {
            StoreError::FunctionNotFound { .. } => {
                Self::not_found(format!("Function not found: {arn}"))
            }
            StoreError::LayerNotFound { name, version } => Self::not_found(match version {
                Some(v) => {
                    format!("Layer version {arn} does not exist (layer {name}, version {v})")
                }
                None => format!("Layer {name} does not exist"),
            }),
            StoreError::Exists { name } => Self::new(
                StatusCode::CONFLICT,
                "ResourceConflictException",
                format!("Function already exist: {name}"),
            ),
            StoreError::RevisionMismatch { .. } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailedException",
                format!(
                    "The Revision Id provided does not match the latest Revision Id. Call the \
                     GetFunction/GetAlias API to retrieve the latest Revision Id ({e})"
                ),
            ),
            StoreError::Invalid { .. } => Self::invalid(e.to_string()),
            StoreError::Archive(a) => Self::invalid(format!("Code: {a}")),
            StoreError::Io { .. } => Self::service(e.to_string()),
        }
    }

    /// The key in the body that holds the message (as the code's model spells it).
    fn message_key(&self) -> &'static str {
        match self.code {
            "ResourceNotFoundException" | "ServiceException" | "ResourceInUseException" => {
                "Message"
            }
            _ => "message",
        }
    }

    /// The body: `{"Type": ..., "message": ...}`.
    pub fn body(&self) -> Vec<u8> {
        let kind = if self.status.is_server_error() {
            "Service"
        } else {
            "User"
        };
        let mut map = serde_json::Map::new();
        map.insert("Type".to_owned(), kind.into());
        map.insert(self.message_key().to_owned(), self.message.clone().into());
        serde_json::to_vec(&serde_json::Value::Object(map)).unwrap_or_default()
    }
}

impl From<AuthError> for AwsError {
    fn from(e: AuthError) -> Self {
        let code = match &e {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::Incomplete(_) => "IncompleteSignatureException",
            AuthError::UnknownKey | AuthError::SessionToken => "UnrecognizedClientException",
            AuthError::Scope(_)
            | AuthError::Expired { .. }
            | AuthError::NotYetCurrent { .. }
            | AuthError::BodyHash(_)
            | AuthError::Mismatch
            | AuthError::Unsignable(_) => "InvalidSignatureException",
        };
        Self::forbidden(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: &AwsError) -> serde_json::Value {
        serde_json::from_slice(&e.body()).unwrap()
    }

    #[test]
    fn store_errors_map_to_aws_codes() {
        let arn = "arn:aws:lambda:us-east-1:000000000000:function:f";
        for (e, status, code, needle) in [
            (
                StoreError::FunctionNotFound { name: "f".into() },
                404,
                "ResourceNotFoundException",
                "Function not found: arn:aws:lambda:us-east-1:000000000000:function:f",
            ),
            (
                StoreError::LayerNotFound {
                    name: "l".into(),
                    version: Some(2),
                },
                404,
                "ResourceNotFoundException",
                "version 2",
            ),
            (
                StoreError::Exists { name: "f".into() },
                409,
                "ResourceConflictException",
                "Function already exist: f",
            ),
            (
                StoreError::RevisionMismatch {
                    name: "f".into(),
                    expected: "a".into(),
                    actual: "b".into(),
                },
                412,
                "PreconditionFailedException",
                "does not match the latest Revision Id",
            ),
            (
                StoreError::Invalid {
                    key: Some("layers".into()),
                    message: "layer x does not exist".into(),
                },
                400,
                "InvalidParameterValueException",
                "layers: layer x does not exist",
            ),
            (
                StoreError::Archive(crate::archive::ArchiveError::BadEntry {
                    entry: "../x".into(),
                    why: "outside the archive".into(),
                }),
                400,
                "InvalidParameterValueException",
                "../x",
            ),
            (
                StoreError::Io {
                    op: "write",
                    path: "/r/.store/x".into(),
                    source: std::io::Error::other("disk full"),
                },
                500,
                "ServiceException",
                "disk full",
            ),
        ] {
            let a = AwsError::from_store(e, arn);
            assert_eq!(a.status.as_u16(), status, "{a}");
            assert_eq!(a.code, code, "{a}");
            assert!(a.message.contains(needle), "{a}");
        }
    }

    #[test]
    fn bodies_use_the_models_message_key() {
        let b = body(&AwsError::not_found("nope"));
        assert_eq!(b, serde_json::json!({"Type": "User", "Message": "nope"}));
        let b = body(&AwsError::invalid("bad"));
        assert_eq!(b, serde_json::json!({"Type": "User", "message": "bad"}));
        let b = body(&AwsError::service("io"));
        assert_eq!(b, serde_json::json!({"Type": "Service", "Message": "io"}));
    }

    #[test]
    fn auth_errors_are_403_with_aws_codes() {
        for (e, code) in [
            (AuthError::Missing, "MissingAuthenticationTokenException"),
            (AuthError::UnknownKey, "UnrecognizedClientException"),
            (AuthError::SessionToken, "UnrecognizedClientException"),
            (AuthError::Mismatch, "InvalidSignatureException"),
            (
                AuthError::Expired {
                    signed: "a".into(),
                    earliest: "b".into(),
                    now: "c".into(),
                },
                "InvalidSignatureException",
            ),
            (
                AuthError::Incomplete("x".into()),
                "IncompleteSignatureException",
            ),
        ] {
            let a = AwsError::from(e.clone());
            assert_eq!(a.status, StatusCode::FORBIDDEN);
            assert_eq!(a.code, code);
            assert_eq!(a.message, e.to_string());
        }
    }
}
