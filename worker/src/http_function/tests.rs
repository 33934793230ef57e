use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Value};

use super::*;
use crate::lambda_config::PayloadFormat;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn event(req: &HttpRequest<'_>, format: PayloadFormat) -> Value {
    serde_json::from_slice(&req.event(format)).unwrap()
}

fn request<'a>(headers: &'a HeaderMap, body: &'a Bytes, query: &'a str) -> HttpRequest<'a> {
    HttpRequest {
        method: "POST",
        path: "/items/a%20b",
        query,
        headers,
        body,
        source_ip: "192.0.2.1".into(),
        request_id: "req-1".into(),
        time_ms: 1_583_348_638_390,
        account_id: "000000000000",
        api_id: "web",
    }
}

#[test]
fn a_v2_event_is_shaped_as_aws_builds_it() {
    let h = headers(&[
        ("host", "example.com:8080"),
        ("user-agent", "curl/8"),
        ("content-type", "text/plain"),
        ("x-many", "a"),
        ("x-many", "b"),
        ("cookie", "a=1; b=2"),
    ]);
    let body = Bytes::from_static(b"hello");
    let e = event(
        &request(&h, &body, "p=1&p=2&q=a%2Fb&flag"),
        PayloadFormat::V2,
    );
    assert_eq!(e["version"], "2.0");
    assert_eq!(e["routeKey"], "$default");
    assert_eq!(e["rawPath"], "/items/a%20b");
    assert_eq!(e["rawQueryString"], "p=1&p=2&q=a%2Fb&flag");
    assert_eq!(e["cookies"], json!(["a=1", "b=2"]));
    assert!(e["headers"].get("cookie").is_none());
    assert_eq!(e["headers"]["x-many"], "a,b");
    assert_eq!(e["headers"]["host"], "example.com:8080");
    assert_eq!(
        e["queryStringParameters"],
        json!({"p": "1,2", "q": "a/b", "flag": ""})
    );
    let rc = &e["requestContext"];
    assert_eq!(rc["http"]["method"], "POST");
    assert_eq!(rc["http"]["path"], "/items/a%20b");
    assert_eq!(rc["http"]["protocol"], "HTTP/1.1");
    assert_eq!(rc["http"]["sourceIp"], "192.0.2.1");
    assert_eq!(rc["http"]["userAgent"], "curl/8");
    assert_eq!(rc["requestId"], "req-1");
    assert_eq!(rc["timeEpoch"], 1_583_348_638_390u64);
    assert_eq!(rc["time"], "04/Mar/2020:19:03:58 +0000");
    assert_eq!(rc["domainName"], "example.com:8080");
    assert_eq!(rc["domainPrefix"], "example");
    assert_eq!(rc["accountId"], "000000000000");
    assert_eq!(e["body"], "hello");
    assert_eq!(e["isBase64Encoded"], false);
}

#[test]
fn a_v2_event_without_body_query_or_cookies_leaves_them_out() {
    let h = headers(&[]);
    let body = Bytes::new();
    let e = event(&request(&h, &body, ""), PayloadFormat::V2);
    for key in ["body", "cookies", "queryStringParameters"] {
        assert!(e.get(key).is_none(), "{key}: {e}");
    }
    assert_eq!(e["isBase64Encoded"], false);
    assert_eq!(e["requestContext"]["domainName"], "localhost");
}

#[test]
fn binary_and_untyped_bodies() {
    let body = Bytes::from_static(&[0, 159, 146, 150, 255]);
    let h = headers(&[("content-type", "application/octet-stream")]);
    let e = event(&request(&h, &body, ""), PayloadFormat::V2);
    assert_eq!(e["isBase64Encoded"], true);
    assert_eq!(e["body"], "AJ+Slv8=");
    // Text that is not UTF-8 is base64 too.
    let h = headers(&[("content-type", "text/plain")]);
    let e = event(&request(&h, &body, ""), PayloadFormat::V2);
    assert_eq!(e["isBase64Encoded"], true);
    // JSON travels as text.
    let json_body = Bytes::from_static(br#"{"a": 1}"#);
    let h = headers(&[("content-type", "application/json; charset=utf-8")]);
    let e = event(&request(&h, &json_body, ""), PayloadFormat::V2);
    assert_eq!(e["body"], r#"{"a": 1}"#);
    // A PNG is base64 even when its bytes happen to be UTF-8.
    let h = headers(&[("content-type", "image/png")]);
    let e = event(&request(&h, &json_body, ""), PayloadFormat::V2);
    assert_eq!(e["isBase64Encoded"], true);
}

#[test]
fn a_v1_event_is_the_rest_api_proxy_shape() {
    let h = headers(&[("x-many", "a"), ("x-many", "b"), ("cookie", "a=1")]);
    let body = Bytes::new();
    let e = event(&request(&h, &body, "p=1&p=2"), PayloadFormat::V1);
    assert_eq!(e["version"], "1.0");
    assert_eq!(e["httpMethod"], "POST");
    assert_eq!(e["path"], "/items/a%20b");
    assert_eq!(e["resource"], "/items/a%20b");
    assert_eq!(e["headers"]["x-many"], "b");
    assert_eq!(e["headers"]["cookie"], "a=1");
    assert_eq!(e["multiValueHeaders"]["x-many"], json!(["a", "b"]));
    assert_eq!(e["queryStringParameters"], json!({"p": "2"}));
    assert_eq!(
        e["multiValueQueryStringParameters"],
        json!({"p": ["1", "2"]})
    );
    assert_eq!(e["requestContext"]["identity"]["sourceIp"], "192.0.2.1");
    assert_eq!(
        e["requestContext"]["requestTimeEpoch"],
        1_583_348_638_390u64
    );
    assert_eq!(e["body"], Value::Null);
    assert_eq!(e["pathParameters"], Value::Null);
    let e = event(&request(&h, &body, ""), PayloadFormat::V1);
    assert_eq!(e["queryStringParameters"], Value::Null);
    assert_eq!(e["multiValueQueryStringParameters"], Value::Null);
}

fn answer(v: Value) -> Result<HttpAnswer, BadAnswer> {
    map_answer(&Bytes::from(v.to_string()))
}

#[test]
fn an_answer_with_status_code_is_a_response() {
    let a = answer(json!({
        "statusCode": 418,
        "headers": {"X-Tea": "earl grey", "Content-Length": "999", "X-Num": 3},
        "multiValueHeaders": {"x-multi": ["1", "2"]},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": "AAEC/w==",
        "isBase64Encoded": true,
    }))
    .unwrap();
    assert_eq!(a.status, StatusCode::IM_A_TEAPOT);
    assert_eq!(a.headers["x-tea"], "earl grey");
    assert_eq!(a.headers["x-num"], "3");
    assert!(a.headers.get("content-length").is_none());
    let multi: Vec<_> = a.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["1", "2"]);
    let cookies: Vec<_> = a.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2"]);
    assert_eq!(&a.body[..], &[0, 1, 2, 255]);
    let text = answer(json!({"statusCode": 201, "body": "made"})).unwrap();
    assert_eq!(text.status, StatusCode::CREATED);
    assert_eq!(&text.body[..], b"made");
    let empty = answer(json!({"statusCode": 204})).unwrap();
    assert!(empty.body.is_empty());
}

#[test]
fn any_other_answer_is_a_200_json_body() {
    let a = answer(json!({"message": "hi"})).unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "application/json");
    assert_eq!(&a.body[..], br#"{"message":"hi"}"#);
    let s = answer(json!("No message yet.")).unwrap();
    assert_eq!(&s.body[..], b"No message yet.");
    let n = answer(json!([1, 2])).unwrap();
    assert_eq!(&n.body[..], b"[1,2]");
}

#[test]
fn answers_that_cannot_be_responses_say_why() {
    for (bad, needle) in [
        (json!({"statusCode": 99}), "statusCode"),
        (json!({"statusCode": "abc"}), "statusCode"),
        (
            json!({"statusCode": 200, "headers": "x"}),
            "headers must be an object",
        ),
        (
            json!({"statusCode": 200, "headers": {"a b": "1"}}),
            "header name",
        ),
        (
            json!({"statusCode": 200, "headers": {"x": "a\nb"}}),
            "header value",
        ),
        (
            json!({"statusCode": 200, "headers": {"x": [1]}}),
            "must be a string",
        ),
        (
            json!({"statusCode": 200, "body": {"a": 1}}),
            "body must be a string",
        ),
        (
            json!({"statusCode": 200, "body": "!!", "isBase64Encoded": true}),
            "base64",
        ),
        (
            json!({"statusCode": 200, "isBase64Encoded": "yes"}),
            "isBase64Encoded",
        ),
        (json!({"statusCode": 200, "cookies": "a=1"}), "cookies"),
        (
            json!({"statusCode": 200, "multiValueHeaders": {"x": "1"}}),
            "must be a list",
        ),
    ] {
        let e = answer(bad.clone()).unwrap_err();
        assert!(e.0.contains(needle), "{bad}: {e}");
    }
}
