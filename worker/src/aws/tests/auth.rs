//! Who may change what: signatures with credentials, loopback without.

use super::*;
use crate::aws::sigv4::tests as vectors;

fn create_request(name: &str) -> AwsRequest {
    let b = serde_json::to_vec(&create_body(name, json!({}))).unwrap();
    request("POST", "/2015-03-31/functions", &b)
}

fn remote(mut req: AwsRequest) -> AwsRequest {
    req.peer_is_loopback = false;
    req
}

#[test]
fn with_credentials_a_change_must_be_signed() {
    let (api, store) = signed_api();
    // Unsigned, even from this machine: refused, nothing created.
    let r = api.handle(&create_request("hello"), now());
    assert_error(
        &r,
        403,
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    );
    assert!(store.snapshot().is_empty());
    // Signed: created.
    let r = api.handle(
        &sign(remote(create_request("hello")), &creds(), now()),
        now(),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", body(&r));
    assert_eq!(store.snapshot().len(), 1);
    // Every method that changes anything needs it.
    for (method, path, b) in [
        (
            "PUT",
            "/2015-03-31/functions/hello/configuration",
            json!({"Timeout": 5}),
        ),
        (
            "PUT",
            "/2015-03-31/functions/hello/code",
            json!({"ZipFile": ZIP_B64}),
        ),
        (
            "POST",
            "/2018-10-31/layers/l/versions",
            json!({"Content": {"ZipFile": ZIP_B64}}),
        ),
        (
            "POST",
            &format!("/2017-03-31/tags/{}", encoded_arn("hello")) as &str,
            json!({"Tags": {"a": "b"}}),
        ),
        (
            "DELETE",
            &format!("/2017-03-31/tags/{}?tagKeys=a", encoded_arn("hello")) as &str,
            json!(null),
        ),
        ("DELETE", "/2015-03-31/functions/hello", json!(null)),
    ] {
        let bytes = if b.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&b).unwrap()
        };
        let before = store.snapshot();
        let r = api.handle(&request(method, path, &bytes), now());
        assert_error(
            &r,
            403,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        );
        assert_eq!(store.snapshot(), before, "{method} {path}");
        let r = api.handle(&sign(request(method, path, &bytes), &creds(), now()), now());
        assert!(r.status.is_success(), "{method} {path}: {}", body(&r));
    }
}

#[test]
fn a_wrong_key_secret_tampering_or_skew_is_refused_with_nothing_changed() {
    let (api, store) = signed_api();
    let wrong_secret = Credentials::new("AKIDTEST", "not-the-secret").unwrap();
    let r = api.handle(&sign(create_request("hello"), &wrong_secret, now()), now());
    assert_error(
        &r,
        403,
        "InvalidSignatureException",
        "The request signature we calculated does not match",
    );
    let wrong_key = Credentials::new("AKIDOTHER", "test-secret-key").unwrap();
    let r = api.handle(&sign(create_request("hello"), &wrong_key, now()), now());
    assert_error(
        &r,
        403,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    );
    // The body changed after signing.
    let mut tampered = sign(create_request("hello"), &creds(), now());
    tampered.body = serde_json::to_vec(&create_body("hellp", json!({})))
        .unwrap()
        .into();
    let r = api.handle(&tampered, now());
    assert_error(&r, 403, "InvalidSignatureException", "does not match");
    // The path changed after signing.
    let mut moved = sign(
        request("DELETE", "/2015-03-31/functions/a", b""),
        &creds(),
        now(),
    );
    moved.path = "/2015-03-31/functions/hello".to_owned();
    assert_error(
        &api.handle(&moved, now()),
        403,
        "InvalidSignatureException",
        "does not match",
    );
    // Signed 16 minutes ago, or 16 minutes ahead.
    let old = now() - Duration::from_secs(16 * 60);
    let r = api.handle(&sign(create_request("hello"), &creds(), old), now());
    assert_error(&r, 403, "InvalidSignatureException", "Signature expired");
    let ahead = now() + Duration::from_secs(16 * 60);
    let r = api.handle(&sign(create_request("hello"), &creds(), ahead), now());
    assert_error(
        &r,
        403,
        "InvalidSignatureException",
        "Signature not yet current",
    );
    // A session token (temporary credentials) is refused.
    let mut token = create_request("hello");
    token
        .headers
        .insert("x-amz-security-token", "t".parse().unwrap());
    let r = api.handle(&sign(token, &creds(), now()), now());
    assert_error(
        &r,
        403,
        "UnrecognizedClientException",
        "X-Amz-Security-Token",
    );
    assert!(store.snapshot().is_empty());
    // 14 minutes of skew is within bounds.
    let r = api.handle(
        &sign(
            create_request("hello"),
            &creds(),
            now() - Duration::from_secs(14 * 60),
        ),
        now(),
    );
    assert_eq!(r.status, StatusCode::CREATED);
}

#[test]
fn reads_are_open_but_a_signed_read_is_verified() {
    let (api, _) = signed_api();
    let r = api.handle(&remote(request("GET", "/2015-03-31/functions", b"")), now());
    assert_eq!(r.status, StatusCode::OK);
    let wrong = Credentials::new("AKIDTEST", "not-the-secret").unwrap();
    let r = api.handle(
        &sign(request("GET", "/2015-03-31/functions", b""), &wrong, now()),
        now(),
    );
    assert_error(&r, 403, "InvalidSignatureException", "does not match");
    let r = api.handle(
        &sign(
            request("GET", "/2015-03-31/functions?MaxItems=2", b""),
            &creds(),
            now(),
        ),
        now(),
    );
    assert_eq!(r.status, StatusCode::OK);
}

#[test]
fn without_credentials_changes_come_from_this_machine_only() {
    let (api, store) = open_api();
    let r = api.handle(&remote(create_request("hello")), now());
    assert_error(
        &r,
        403,
        "AccessDeniedException",
        "this worker has no credentials; changes are accepted only from this machine",
    );
    assert!(store.snapshot().is_empty());
    let r = api.handle(&remote(request("GET", "/2015-03-31/functions", b"")), now());
    assert_eq!(r.status, StatusCode::OK);
    let r = api.handle(&create_request("hello"), now());
    assert_eq!(r.status, StatusCode::CREATED);
    // A signature cannot be checked without credentials: it changes nothing about the rule.
    let r = api.handle(
        &remote(sign(create_request("other"), &creds(), now())),
        now(),
    );
    assert_error(&r, 403, "AccessDeniedException", "only from this machine");
}

#[test]
fn the_request_botocore_signed_creates_the_function() {
    // botocore's CreateFunction, byte for byte, against an API with the same credentials.
    let store = std::sync::Arc::new(fake::FakeStore::default());
    let api = LambdaApi::new(
        store.clone(),
        Some(vectors::creds()),
        "us-east-1",
        "000000000000",
        defaults(),
    );
    let v = &vectors::CREATE;
    let req = AwsRequest {
        method: Method::POST,
        path: v.path.to_owned(),
        query: None,
        headers: v.header_map(),
        body: bytes::Bytes::from_static(v.body.as_bytes()),
        peer_is_loopback: false,
    };
    let r = api.handle(&req, vectors::signed_at() + Duration::from_secs(3));
    let c = body(&r);
    assert_eq!(r.status, StatusCode::CREATED, "{c}");
    assert_eq!(c["FunctionName"], "hello");
    assert_eq!(c["Runtime"], "python3.12");
    assert_eq!(c["Timeout"], 30);
    assert_eq!(c["Environment"], json!({"Variables": {"A": "b c"}}));
    // Its ListFunctions and GetFunction by ARN verify too.
    for v in [&vectors::LIST, &vectors::GET_ARN] {
        let req = AwsRequest {
            method: Method::GET,
            path: v.path.to_owned(),
            query: v.query.map(str::to_owned),
            headers: v.header_map(),
            body: bytes::Bytes::new(),
            peer_is_loopback: false,
        };
        let r = api.handle(&req, vectors::signed_at());
        assert_eq!(r.status, StatusCode::OK, "{} {}", v.path, body(&r));
    }
    // And its DeleteFunction, replayed an hour later, is refused.
    let d = &vectors::DELETE;
    let req = AwsRequest {
        method: Method::DELETE,
        path: d.path.to_owned(),
        query: None,
        headers: d.header_map(),
        body: bytes::Bytes::new(),
        peer_is_loopback: false,
    };
    let r = api.handle(&req, vectors::signed_at() + Duration::from_secs(3600));
    assert_error(&r, 403, "InvalidSignatureException", "Signature expired");
    assert_eq!(store.snapshot().len(), 1);
    let r = api.handle(&req, vectors::signed_at());
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(store.snapshot().is_empty());
}
