//! The AWS Lambda management API and AWS Signature Version 4, independent of any transport.
//!
//! The registry server and every worker hand a request whose path [`is_api_path`] to
//! [`LambdaApi::handle`] (on the blocking pool: it reads and writes the store) and send back
//! the [`AwsResponse`]. The API answers at AWS's paths with AWS's JSON shapes and error codes,
//! so that boto3, aws-cli and the SDKs work with `endpoint_url` set to the server:
//!
//! - [`credentials`]: the access key and secret key, in a 0600 file;
//! - [`sigv4`]: verifying a request's signature, signing one for the CLI;
//! - [`routes`]: which operation a method and path are (`operations.rs`: the API's table);
//! - [`arn`]: names and ARNs of functions and layers;
//! - [`members`]: request members into `lambda.json` settings;
//! - [`shapes`]: the JSON answered;
//! - [`errors`]: every error as AWS shapes it;
//! - [`lambda_api`]: the policy (who may change what) and each operation over a
//!   [`crate::functions::FunctionStore`].

pub mod arn;
pub mod credentials;
pub mod errors;
mod event_config_api;
pub mod lambda_api;
mod layers_api;
pub mod members;
mod operations;
pub mod routes;
pub mod shapes;
pub mod sigv4;

pub use credentials::{Credentials, CredentialsError};
pub use errors::AwsError;
pub use lambda_api::LambdaApi;
pub use routes::is_api_path;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

/// Largest request body the API reads, in bytes: AWS's limit for CreateFunction (a 50 MB
/// archive in base64 and its JSON). A server reads at most this much and answers
/// [`AwsResponse::too_large`] beyond it.
pub const MAX_REQUEST_BYTES: usize = 69_905_067;

/// One request, as the HTTP server received it.
#[derive(Debug, Clone)]
pub struct AwsRequest {
    pub method: Method,
    /// The path as received, still percent-encoded (the signature covers it so).
    pub path: String,
    /// The query string as received, without `?`.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    /// Whether the client connected from this machine (127.0.0.0/8 or ::1).
    pub peer_is_loopback: bool,
}

/// One answer: JSON (or nothing, for 204) with `Content-Type` and `x-amzn-RequestId`, and
/// `x-amzn-ErrorType` on an error.
#[derive(Debug, Clone)]
pub struct AwsResponse {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Vec<u8>,
}

impl AwsResponse {
    /// `status` with a JSON body (none for 204).
    pub fn json(status: StatusCode, body: Vec<u8>, request_id: &str) -> Self {
        let mut headers = Vec::with_capacity(3);
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.push((HeaderName::from_static("x-amzn-requestid"), id));
        }
        if status != StatusCode::NO_CONTENT {
            headers.push((
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ));
        }
        Self {
            status,
            headers,
            body,
        }
    }

    /// The error's answer.
    pub fn error(e: &AwsError, request_id: &str) -> Self {
        let mut r = Self::json(e.status, e.body(), request_id);
        r.headers.push((
            HeaderName::from_static("x-amzn-errortype"),
            HeaderValue::from_static(e.code),
        ));
        r
    }

    /// 413 for a body longer than [`MAX_REQUEST_BYTES`], for a server that stops reading
    /// there (`operation` as [`routes::route`] names it, or the path).
    pub fn too_large(operation: &str) -> Self {
        Self::error(
            &AwsError::too_large(MAX_REQUEST_BYTES, operation),
            &uuid::Uuid::new_v4().to_string(),
        )
    }

    /// The value of a header of this answer.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.to_str().ok())
    }
}

#[cfg(test)]
mod tests;
