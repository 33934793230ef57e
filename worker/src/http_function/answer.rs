//! A function's answer to an HTTP request, mapped back to a response as API Gateway maps it: an
//! object with `statusCode` gives the status, `headers`, `multiValueHeaders`, `cookies`
//! (`Set-Cookie`) and `body` (base64-decoded when `isBase64Encoded`); any other JSON value is
//! a 200 `application/json` response whose body is that value (a string: its text).

use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, SET_COOKIE};
use http::{HeaderMap, StatusCode};
use serde_json::Value;

/// A response ready to send.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why an answer cannot be a response (the function's fault: 502).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadAnswer(pub String);

/// Headers a function may not set: the connection's own, which the worker writes.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "content-length",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// Maps the function's JSON result.
pub fn map_answer(result: &Bytes) -> Result<HttpAnswer, BadAnswer> {
    let value: Value = serde_json::from_slice(result)
        .map_err(|e| BadAnswer(format!("the answer is not JSON: {e}")))?;
    let Value::Object(map) = &value else {
        return Ok(json_answer(match value {
            Value::String(s) => Bytes::from(s),
            _ => result.clone(),
        }));
    };
    let Some(code) = map.get("statusCode") else {
        return Ok(json_answer(result.clone()));
    };
    let status = code
        .as_u64()
        .or_else(|| code.as_str().and_then(|s| s.parse().ok()))
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| (100..=599).contains(n))
        .and_then(|n| StatusCode::from_u16(n).ok())
        .ok_or_else(|| {
            BadAnswer(format!(
                "statusCode must be a number from 100 to 599, not {code}"
            ))
        })?;
    let mut headers = HeaderMap::new();
    if let Some(given) = map.get("headers").filter(|v| !v.is_null()) {
        let Value::Object(given) = given else {
            return Err(BadAnswer(format!("headers must be an object, not {given}")));
        };
        for (name, value) in given {
            add_header(&mut headers, name, value, "headers")?;
        }
    }
    if let Some(given) = map.get("multiValueHeaders").filter(|v| !v.is_null()) {
        let Value::Object(given) = given else {
            return Err(BadAnswer(format!(
                "multiValueHeaders must be an object, not {given}"
            )));
        };
        for (name, values) in given {
            let Value::Array(values) = values else {
                return Err(BadAnswer(format!(
                    "multiValueHeaders.{name} must be a list, not {values}"
                )));
            };
            // These replace what `headers` said of the name, as API Gateway merges them.
            if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                headers.remove(n);
            }
            for value in values {
                add_header(&mut headers, name, value, "multiValueHeaders")?;
            }
        }
    }
    if let Some(cookies) = map.get("cookies").filter(|v| !v.is_null()) {
        let Value::Array(cookies) = cookies else {
            return Err(BadAnswer(format!("cookies must be a list, not {cookies}")));
        };
        for cookie in cookies {
            let Some(cookie) = cookie.as_str() else {
                return Err(BadAnswer(format!("cookies: {cookie} is not a string")));
            };
            let value = HeaderValue::from_str(cookie).map_err(|_| {
                BadAnswer(format!("cookies: {cookie:?} is not a valid header value"))
            })?;
            headers.append(SET_COOKIE, value);
        }
    }
    let base64 = match map.get("isBase64Encoded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(BadAnswer(format!(
                "isBase64Encoded must be true or false, not {other}"
            )))
        }
    };
    let body = match map.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(text)) if base64 => base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map(Bytes::from)
            .map_err(|e| {
                BadAnswer(format!(
                    "body is not valid base64 (isBase64Encoded is true): {e}"
                ))
            })?,
        Some(Value::String(text)) => Bytes::from(text.clone()),
        Some(other) => {
            return Err(BadAnswer(format!(
                "body must be a string (JSON-encode an object first), not {}",
                kind(other)
            )))
        }
    };
    Ok(HttpAnswer {
        status,
        headers,
        body,
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "an object",
        Value::Array(_) => "a list",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::String(_) => "a string",
        Value::Null => "null",
    }
}

/// A 200 `application/json` response (what an answer without `statusCode` becomes).
fn json_answer(body: Bytes) -> HttpAnswer {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    HttpAnswer {
        status: StatusCode::OK,
        headers,
        body,
    }
}

/// Adds one header the function gave (a string, number or boolean); the connection's own
/// headers are dropped.
fn add_header(
    headers: &mut HeaderMap,
    name: &str,
    value: &Value,
    key: &str,
) -> Result<(), BadAnswer> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => {
            return Err(BadAnswer(format!(
                "{key}.{name} must be a string, not {}",
                kind(other)
            )))
        }
    };
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| BadAnswer(format!("{key}: {name:?} is not a valid header name")))?;
    if HOP_BY_HOP.contains(&header.as_str()) {
        return Ok(());
    }
    let value = HeaderValue::from_str(&text).map_err(|_| {
        BadAnswer(format!(
            "{key}.{name}: {text:?} is not a valid header value"
        ))
    })?;
    headers.append(header, value);
    Ok(())
}
