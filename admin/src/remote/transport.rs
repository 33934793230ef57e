//! One call to the registry server: the request signed with AWS Signature Version 4 (when
//! there are credentials) as boto3 signs a Lambda call, and the answer's error, when there is
//! one, in AWS's shape (`x-amzn-ErrorType` and `{"message": ...}`) turned into a
//! [`StoreError`].

use std::time::{Duration, SystemTime};

use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use http::{HeaderMap, Method};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;
use worker::aws::{sigv4, Credentials};
use worker::functions::StoreError;
use worker::http_client::{self as http_client, Request, Response};

/// What is not percent-encoded in a path segment or query value: RFC 3986's unreserved
/// characters, as botocore leaves them.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one path segment or query value.
pub fn encode(raw: &str) -> String {
    utf8_percent_encode(raw, UNRESERVED).to_string()
}

/// The server, and how requests to it are signed.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `http://host:port`.
    pub url: String,
    pub host: String,
    pub port: u16,
    pub credentials: Option<Credentials>,
    /// The region signed for (the cluster's `aws_region`).
    pub region: String,
    pub timeout: Duration,
}

/// What a failed call was about, so a 404 names the right thing.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Function(&'a str),
    Layer(&'a str, Option<u64>),
    Other,
}

/// An answer outside 2xx: status, AWS error code and message.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub status_text: String,
    pub code: String,
    pub message: String,
}

impl Failure {
    fn of(r: &Response) -> Self {
        let code = r
            .headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            // `Code:http://internal.amazon.com/...` in some of AWS's answers.
            .map(|v| v.split(':').next().unwrap_or(v).to_owned())
            .unwrap_or_default();
        let message = match serde_json::from_slice::<Value>(&r.bytes) {
            Ok(v) => v
                .get("message")
                .or_else(|| v.get("Message"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| one_line(&r.body)),
            Err(_) => one_line(&r.body),
        };
        Self {
            status: r.status,
            status_text: r.status_text(),
            code,
            message,
        }
    }

    /// `403 Forbidden (UnrecognizedClientException): The security token ...`.
    pub fn describe(&self) -> String {
        match (self.code.is_empty(), self.message.is_empty()) {
            (true, true) => self.status_text.clone(),
            (true, false) => format!("{}: {}", self.status_text, self.message),
            (false, true) => format!("{} ({})", self.status_text, self.code),
            (false, false) => format!("{} ({}): {}", self.status_text, self.code, self.message),
        }
    }

    /// The store's error for this answer. A 404 without an AWS error code is the pull
    /// endpoint's (`/registry/functions/<name>`): the function does not exist either.
    pub fn into_store_error(self, method: &Method, url: &str, subject: Subject<'_>) -> StoreError {
        let code = match (self.code.as_str(), self.status) {
            ("", 404) => "ResourceNotFoundException",
            (code, _) => code,
        };
        match (code, subject) {
            ("ResourceNotFoundException", Subject::Function(name)) => {
                StoreError::FunctionNotFound {
                    name: name.to_owned(),
                }
            }
            ("ResourceNotFoundException", Subject::Layer(name, version)) => {
                StoreError::LayerNotFound {
                    name: name.to_owned(),
                    version,
                }
            }
            ("ResourceConflictException", Subject::Function(name)) => StoreError::Exists {
                name: name.to_owned(),
            },
            (
                "InvalidParameterValueException"
                | "InvalidRequestContentException"
                | "RequestEntityTooLargeException",
                _,
            ) => StoreError::Invalid {
                key: None,
                message: self.message,
            },
            _ => StoreError::Io {
                op: method_op(method),
                path: url.into(),
                source: std::io::Error::other(self.describe()),
            },
        }
    }
}

/// The `op` of [`StoreError::Io`] for a request: the method.
fn method_op(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "call",
    }
}

/// Text on one line, cut at 300 characters.
fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match joined.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &joined[..cut]),
        None => joined,
    }
}

impl Endpoint {
    /// `method path_and_query` with a JSON body (or none), signed; a 2xx answer, or the
    /// answer's error for `subject`.
    pub fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        subject: Subject<'_>,
    ) -> Result<Response, StoreError> {
        let url = format!("{}{path_and_query}", self.url);
        let io = |source: std::io::Error| StoreError::Io {
            op: method_op(&method),
            path: url.clone().into(),
            source,
        };
        let body = match body {
            Some(v) => serde_json::to_vec(v).map_err(|e| io(std::io::Error::other(e)))?,
            None => Vec::new(),
        };
        let headers = self.headers(&method, &url, &body).map_err(io)?;
        let mut req = Request::new(
            method.clone(),
            &self.host,
            self.port,
            path_and_query,
            self.timeout,
        );
        req.headers = headers;
        req.body = body.into();
        let response = http_client::send_blocking(req).map_err(|e| {
            io(std::io::Error::new(
                e.kind(),
                http_client::describe_error(&e),
            ))
        })?;
        if (200..300).contains(&response.status) {
            return Ok(response);
        }
        Err(Failure::of(&response).into_store_error(&method, &url, subject))
    }

    /// `Host`, `Content-Type` for a body, and the signature's headers.
    fn headers(&self, method: &Method, url: &str, body: &[u8]) -> std::io::Result<HeaderMap> {
        let authority = host_header(&self.host, self.port);
        let mut pairs: Vec<(&str, String)> = vec![("host", authority)];
        if !body.is_empty() {
            pairs.push(("content-type", "application/json".to_owned()));
        }
        if let Some(creds) = &self.credentials {
            let view: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let signed = sigv4::sign(
                method.as_str(),
                url,
                &view,
                body,
                creds,
                &self.region,
                SystemTime::now(),
            )
            .map_err(std::io::Error::other)?;
            pairs.extend(signed);
        }
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            let name = match name {
                "host" => HOST,
                "content-type" => CONTENT_TYPE,
                other => HeaderName::from_bytes(other.as_bytes()).map_err(std::io::Error::other)?,
            };
            let value = HeaderValue::from_str(&value).map_err(std::io::Error::other)?;
            map.append(name, value);
        }
        Ok(map)
    }
}

/// The `Host` header for `host`:`port` (an IPv6 address in brackets), as the URL's authority.
fn host_header(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, code: Option<&str>, body: &str) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(c) = code {
            headers.insert("x-amzn-errortype", HeaderValue::from_str(c).unwrap());
        }
        Response {
            status,
            reason: http::StatusCode::from_u16(status)
                .unwrap()
                .canonical_reason()
                .unwrap_or_default()
                .to_owned(),
            body: body.to_owned(),
            bytes: body.as_bytes().to_vec().into(),
            headers,
        }
    }

    #[test]
    fn aws_errors_become_store_errors() {
        let url = "http://127.0.0.1:9000/2015-03-31/functions";
        let f = |status, code, body| Failure::of(&response(status, code, body));
        let e = f(
            404,
            Some("ResourceNotFoundException"),
            r#"{"Type":"User","Message":"Function not found: arn"}"#,
        )
        .into_store_error(&Method::GET, url, Subject::Function("hello"));
        assert!(
            matches!(e, StoreError::FunctionNotFound { ref name } if name == "hello"),
            "{e}"
        );
        let e = f(
            404,
            None,
            r#"{"error": "no such endpoint: /registry/functions/hello"}"#,
        )
        .into_store_error(&Method::GET, url, Subject::Function("hello"));
        assert!(
            matches!(e, StoreError::FunctionNotFound { ref name } if name == "hello"),
            "{e}"
        );
        let e = f(404, Some("ResourceNotFoundException"), "{}").into_store_error(
            &Method::GET,
            url,
            Subject::Layer("common", Some(2)),
        );
        assert!(
            matches!(
                e,
                StoreError::LayerNotFound {
                    version: Some(2),
                    ..
                }
            ),
            "{e}"
        );
        let e = f(
            409,
            Some("ResourceConflictException"),
            r#"{"message":"Function already exist: hello"}"#,
        )
        .into_store_error(&Method::POST, url, Subject::Function("hello"));
        assert!(matches!(e, StoreError::Exists { .. }), "{e}");
        let e = f(
            400,
            Some("InvalidParameterValueException"),
            r#"{"message":"MemorySize: must be from 128 to 3008, not 100"}"#,
        )
        .into_store_error(&Method::POST, url, Subject::Function("hello"));
        assert_eq!(
            e.to_string(),
            "MemorySize: must be from 128 to 3008, not 100"
        );
        let e = f(
            403,
            Some("UnrecognizedClientException:http://internal.amazon.com/coral/"),
            r#"{"Type":"User","message":"The security token included in the request is invalid."}"#,
        )
        .into_store_error(&Method::POST, url, Subject::Function("hello"));
        assert_eq!(
            e.to_string(),
            format!("cannot POST {url}: 403 Forbidden (UnrecognizedClientException): The security token included in the request is invalid.")
        );
        let e = f(502, None, "<html>\n bad gateway\n</html>").into_store_error(
            &Method::GET,
            url,
            Subject::Other,
        );
        assert_eq!(
            e.to_string(),
            format!("cannot GET {url}: 502 Bad Gateway: <html> bad gateway </html>")
        );
    }

    #[test]
    fn segments_are_encoded_as_botocore_encodes_them() {
        assert_eq!(encode("hello-world_1.x~"), "hello-world_1.x~");
        assert_eq!(
            encode("arn:aws:lambda:us-east-1:000000000000:function:f"),
            "arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af"
        );
        assert_eq!(encode("a b/c=d"), "a%20b%2Fc%3Dd");
    }
}
