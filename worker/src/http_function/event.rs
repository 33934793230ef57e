//! An HTTP request as the event API Gateway gives a function: payload format 2.0 (HTTP APIs)
//! or 1.0 (REST APIs' Lambda proxy integration), built as AWS builds them.

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{json, Map, Value};

use crate::lambda_config::PayloadFormat;

/// What of an HTTP request goes into its event.
#[derive(Debug)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// The path below `/run/<name>`, as received (percent-encoded): `/` at least.
    pub path: &'a str,
    /// The query string, as received, without `?` (empty when none).
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
    pub source_ip: String,
    pub request_id: String,
    /// When the request arrived, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// `requestContext.accountId`.
    pub account_id: &'a str,
    /// `requestContext.apiId`: the function's name.
    pub api_id: &'a str,
}

impl HttpRequest<'_> {
    /// The event in `format`, as JSON text.
    pub fn event(&self, format: PayloadFormat) -> Vec<u8> {
        let value = match format {
            PayloadFormat::V2 => self.v2(),
            PayloadFormat::V1 => self.v1(),
        };
        serde_json::to_vec(&value).unwrap_or_default()
    }

    /// Payload format 2.0: headers lowercase with repeats comma-joined, the Cookie header as
    /// `cookies`, `queryStringParameters` decoded with repeats comma-joined, no `body` when
    /// the request has none.
    fn v2(&self) -> Value {
        let mut headers = Map::new();
        let mut cookies = Vec::new();
        for name in self.headers.keys() {
            let values = self.headers.get_all(name).iter().map(text);
            if name == http::header::COOKIE {
                for value in values {
                    cookies.extend(
                        value
                            .split(';')
                            .map(str::trim)
                            .filter(|c| !c.is_empty())
                            .map(|c| Value::from(c.to_owned())),
                    );
                }
                continue;
            }
            headers.insert(
                name.as_str().to_owned(),
                values.collect::<Vec<_>>().join(",").into(),
            );
        }
        let host = self.host();
        let mut http = Map::new();
        http.insert("method".into(), self.method.into());
        http.insert("path".into(), self.path.into());
        http.insert("protocol".into(), "HTTP/1.1".into());
        http.insert("sourceIp".into(), self.source_ip.clone().into());
        http.insert("userAgent".into(), self.header("user-agent").into());
        let mut event = Map::new();
        event.insert("version".into(), "2.0".into());
        event.insert("routeKey".into(), "$default".into());
        event.insert("rawPath".into(), self.path.into());
        event.insert("rawQueryString".into(), self.query.into());
        if !cookies.is_empty() {
            event.insert("cookies".into(), cookies.into());
        }
        event.insert("headers".into(), headers.into());
        let query = self.query_parameters();
        if !query.is_empty() {
            let joined: Map<String, Value> = query
                .into_iter()
                .map(|(k, v)| (k, v.join(",").into()))
                .collect();
            event.insert("queryStringParameters".into(), joined.into());
        }
        event.insert(
            "requestContext".into(),
            json!({
                "accountId": self.account_id,
                "apiId": self.api_id,
                "domainName": host,
                "domainPrefix": host.split('.').next().unwrap_or_default(),
                "http": http,
                "requestId": self.request_id,
                "routeKey": "$default",
                "stage": "$default",
                "time": clf_time(self.time_ms),
                "timeEpoch": self.time_ms,
            }),
        );
        let (body, base64) = self.body_text();
        if let Some(body) = body {
            event.insert("body".into(), body.into());
        }
        event.insert("isBase64Encoded".into(), base64.into());
        event.into()
    }

    /// Payload format 1.0: `headers` with each header's last value and `multiValueHeaders`
    /// with all (the Cookie header among them), the query likewise, `null` where a request
    /// has none.
    fn v1(&self) -> Value {
        let mut headers = Map::new();
        let mut multi = Map::new();
        for name in self.headers.keys() {
            let values: Vec<String> = self.headers.get_all(name).iter().map(text).collect();
            if let Some(last) = values.last() {
                headers.insert(name.as_str().to_owned(), last.clone().into());
            }
            multi.insert(name.as_str().to_owned(), values.into());
        }
        let query = self.query_parameters();
        let (single, multi_query) = if query.is_empty() {
            (Value::Null, Value::Null)
        } else {
            let single: Map<String, Value> = query
                .iter()
                .map(|(k, v)| (k.clone(), v.last().cloned().unwrap_or_default().into()))
                .collect();
            let multi: Map<String, Value> = query.into_iter().map(|(k, v)| (k, v.into())).collect();
            (single.into(), multi.into())
        };
        let host = self.host();
        let (body, base64) = self.body_text();
        json!({
            "version": "1.0",
            "resource": self.path,
            "path": self.path,
            "httpMethod": self.method,
            "headers": headers,
            "multiValueHeaders": multi,
            "queryStringParameters": single,
            "multiValueQueryStringParameters": multi_query,
            "requestContext": {
                "accountId": self.account_id,
                "apiId": self.api_id,
                "domainName": host,
                "domainPrefix": host.split('.').next().unwrap_or_default(),
                "extendedRequestId": self.request_id,
                "httpMethod": self.method,
                "identity": {
                    "sourceIp": self.source_ip,
                    "userAgent": self.header("user-agent"),
                },
                "path": self.path,
                "protocol": "HTTP/1.1",
                "requestId": self.request_id,
                "requestTime": clf_time(self.time_ms),
                "requestTimeEpoch": self.time_ms,
                "resourceId": Value::Null,
                "resourcePath": self.path,
                "stage": "$default",
            },
            "pathParameters": Value::Null,
            "stageVariables": Value::Null,
            "body": body,
            "isBase64Encoded": base64,
        })
    }

    fn header(&self, name: &str) -> String {
        self.headers.get(name).map(text).unwrap_or_default()
    }

    fn host(&self) -> String {
        let host = self.header("host");
        if host.is_empty() {
            "localhost".to_owned()
        } else {
            host
        }
    }

    /// The query's parameters, percent-decoded, each with its values in order.
    fn query_parameters(&self) -> BTreeMap<String, Vec<String>> {
        let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in self.query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            params.entry(decode(key)).or_default().push(decode(value));
        }
        params
    }

    /// The body as the event carries it: `None` when empty; text when it is UTF-8 and its
    /// content type is textual (or not given); else base64, with `isBase64Encoded`.
    fn body_text(&self) -> (Option<String>, bool) {
        if self.body.is_empty() {
            return (None, false);
        }
        let content_type = self.header("content-type");
        if is_textual(&content_type) {
            if let Ok(text) = std::str::from_utf8(self.body) {
                return (Some(text.to_owned()), false);
            }
        }
        (
            Some(base64::engine::general_purpose::STANDARD.encode(self.body)),
            true,
        )
    }
}

/// A header's value as text (bytes beyond ASCII read as Latin-1, as HTTP/1.1 has them).
fn text(value: &http::HeaderValue) -> String {
    match value.to_str() {
        Ok(s) => s.to_owned(),
        Err(_) => value.as_bytes().iter().map(|&b| char::from(b)).collect(),
    }
}

fn decode(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether a body of this content type travels as text: none given, `text/*`, JSON, XML,
/// JavaScript, form data, GraphQL, YAML.
pub fn is_textual(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.is_empty()
        || essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/x-www-form-urlencoded"
                | "application/graphql"
                | "application/x-yaml"
                | "application/yaml"
        )
}

/// `12/Mar/2020:19:03:58 +0000`, the time of `requestContext.time`.
fn clf_time(ms: u64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    time::OffsetDateTime::from(t)
        .format(FORMAT)
        .unwrap_or_else(|_| ms.to_string())
}
