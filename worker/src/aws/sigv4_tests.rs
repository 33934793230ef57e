//! Requests signed by botocore 1.44.5 (the signer of boto3 and aws-cli), captured as its
//! Lambda client sent them with fixed credentials at a fixed time (2026-12-02 03:04:05 UTC);
//! `UPDATE_CONFIG` was signed by `botocore.auth.SigV4Auth` directly, with a body hash header
//! and a header whose value has spaces to collapse.

use super::*;

const ACCESS_KEY: &str = "AKIDEXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const AMZ_DATE: &str = "20261202T030405Z";
const USER_AGENT: &str = "Botocore/1.44.5 ua/2.1 os/linux md/arch#x86_64 lang/python#3.11.7";

/// One captured request: method, host, path, query, headers besides Host, body.
pub(crate) struct Vector {
    pub method: &'static str,
    pub host: &'static str,
    pub path: &'static str,
    pub query: Option<&'static str>,
    pub headers: &'static [(&'static str, &'static str)],
    pub body: &'static str,
}

pub(crate) const LIST: Vector = Vector {
    method: "GET",
    host: "127.0.0.1:9000",
    path: "/2015-03-31/functions",
    query: Some("MaxItems=5&Marker=bWFya2Vy"),
    headers: &[
        ("User-Agent", USER_AGENT),
        ("X-Amz-Date", AMZ_DATE),
        ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261202/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=4c63dd5bd58741d3f942c8a4b70c07ce010602d2ad318d1c76652db95f405951"),
        ("amz-sdk-invocation-id", "13d7310b-fcf5-4785-bf1f-121031b2fde2"),
        ("amz-sdk-request", "attempt=1; max=3"),
    ],
    body: "",
};

pub(crate) const CREATE: Vector = Vector {
    method: "POST",
    host: "127.0.0.1:9000",
    path: "/2015-03-31/functions",
    query: None,
    headers: &[
        ("Content-Type", "application/json"),
        ("User-Agent", USER_AGENT),
        ("X-Amz-Date", AMZ_DATE),
        ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261202/us-east-1/lambda/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=f027a27d5ec253032d3ae771d3e6bdb7af5b4e15b8bec92f78eefa364bf031e4"),
        ("amz-sdk-invocation-id", "ea4d24d2-341d-45bd-8cab-c2cdeca7dd06"),
        ("amz-sdk-request", "attempt=1; max=3"),
        ("Content-Length", "236"),
    ],
    body: r#"{"FunctionName": "hello", "Runtime": "python3.12", "Role": "arn:aws:iam::000000000000:role/r", "Handler": "app.handler", "Code": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}, "Timeout": 30, "Environment": {"Variables": {"A": "b c"}}}"#,
};

pub(crate) const GET_ARN: Vector = Vector {
    method: "GET",
    host: "127.0.0.1:9000",
    path: "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Ahello%3A%24LATEST",
    query: None,
    headers: &[
        ("User-Agent", USER_AGENT),
        ("X-Amz-Date", AMZ_DATE),
        ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261202/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=1cdef540fc5c6316ee81b542d993a0914501b38008b5e2b4ed769ef127c207c1"),
    ],
    body: "",
};

pub(crate) const UNTAG: Vector = Vector {
    method: "DELETE",
    host: "127.0.0.1:9000",
    path: "/2017-03-31/tags/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Ahello",
    query: Some("tagKeys=a%20b&tagKeys=c"),
    headers: &[
        ("User-Agent", USER_AGENT),
        ("X-Amz-Date", AMZ_DATE),
        ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261202/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=807bf455d5cd79a27ad5a6d42cdbe9cde393cfa257f1893763234b39d0a954d9"),
        ("Content-Length", "0"),
    ],
    body: "",
};

pub(crate) const DELETE: Vector = Vector {
    method: "DELETE",
    host: "127.0.0.1:9000",
    path: "/2015-03-31/functions/hello",
    query: None,
    headers: &[
        ("User-Agent", USER_AGENT),
        ("X-Amz-Date", AMZ_DATE),
        ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261202/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=169309d4fa71f41e5f6ba8a37e8ae436d70253146bef638518311923b38d150c"),
        ("Content-Length", "0"),
    ],
    body: "",
};

pub(crate) const UPDATE_CONFIG: Vector = Vector {
    method: "PUT",
    host: "localhost:8080",
    path: "/2015-03-31/functions/hello/configuration",
    query: None,
    headers: &[
        ("Content-Type", "application/json"),
        ("X-Amz-Content-Sha256", "a6fdca9014fe8ed22360ce6f4de470f21a1d33df928078db97d4b2c285ec7d72"),
        ("X-Custom", "  a   b  "),
        ("X-Amz-Date", AMZ_DATE),
        ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261202/eu-west-3/lambda/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-custom, Signature=bb4bf1febcdaa97b1c2df0fcb4f78c4d98aa2df982765a413082992773182bbd"),
    ],
    body: r#"{"Timeout": 60, "MemorySize": 256}"#,
};

pub(crate) const ALL: [&Vector; 6] = [&LIST, &CREATE, &GET_ARN, &UNTAG, &DELETE, &UPDATE_CONFIG];

pub(crate) fn creds() -> Credentials {
    Credentials::new(ACCESS_KEY, SECRET_KEY).unwrap()
}

/// When the vectors were signed.
pub(crate) fn signed_at() -> SystemTime {
    parse_amz_date(AMZ_DATE).unwrap()
}

impl Vector {
    pub(crate) fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert("host", self.host.parse().unwrap());
        for (name, value) in self.headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn verify_with(
        &self,
        headers: &HeaderMap,
        creds: &Credentials,
        now: SystemTime,
    ) -> Result<Verified, AuthError> {
        let parts = RequestParts {
            method: self.method,
            path: self.path,
            query: self.query,
            headers,
            body: self.body.as_bytes(),
        };
        verify(&parts, creds, now)
    }

    fn verify(&self) -> Result<Verified, AuthError> {
        self.verify_with(&self.header_map(), &creds(), signed_at())
    }

    fn signature(&self) -> &'static str {
        let auth = self
            .headers
            .iter()
            .find(|(n, _)| *n == "Authorization")
            .unwrap()
            .1;
        auth.rsplit("Signature=").next().unwrap()
    }
}

#[test]
fn botocore_signatures_verify() {
    for v in ALL {
        let ok = v
            .verify()
            .unwrap_or_else(|e| panic!("{} {}: {e}", v.method, v.path));
        assert_eq!(ok.access_key, ACCESS_KEY);
        assert_eq!(ok.signed_at, signed_at());
    }
    assert_eq!(UPDATE_CONFIG.verify().unwrap().region, "eu-west-3");
    assert_eq!(LIST.verify().unwrap().region, "us-east-1");
}

#[test]
fn any_change_to_what_was_signed_fails() {
    let check = |what: &str, r: Result<Verified, AuthError>| {
        assert_eq!(r, Err(AuthError::Mismatch), "{what}");
    };
    for v in ALL {
        let headers = v.header_map();
        let parts = |path, query, body: &'static str| RequestParts {
            method: v.method,
            path,
            query,
            headers: &headers,
            body: body.as_bytes(),
        };
        let run = |p: RequestParts<'_>| verify(&p, &creds(), signed_at());
        check(
            "method",
            verify(
                &RequestParts {
                    method: "PATCH",
                    ..parts(v.path, v.query, v.body)
                },
                &creds(),
                signed_at(),
            ),
        );
        check(
            "path",
            run(parts("/2015-03-31/functions/other", v.query, v.body)),
        );
        check("query", run(parts(v.path, Some("MaxItems=6"), v.body)));
        if v.query.is_some() {
            check("no query", run(parts(v.path, None, v.body)));
        }
        let secret = Credentials::new(ACCESS_KEY, "another-secret-key").unwrap();
        check("secret", v.verify_with(&headers, &secret, signed_at()));
        // The host is signed by every client.
        let mut h = v.header_map();
        h.insert("host", "127.0.0.1:9001".parse().unwrap());
        check("host", v.verify_with(&h, &creds(), signed_at()));
        // A time within the skew but not the signed one.
        let mut h = v.header_map();
        h.insert("x-amz-date", "20261202T030406Z".parse().unwrap());
        check("x-amz-date", v.verify_with(&h, &creds(), signed_at()));
        // A flipped digit of the signature.
        let mut h = v.header_map();
        let auth = h.get("authorization").unwrap().to_str().unwrap().to_owned();
        let last = auth.chars().last().unwrap();
        let flipped = format!(
            "{}{}",
            &auth[..auth.len() - 1],
            if last == '0' { '1' } else { '0' }
        );
        h.insert("authorization", flipped.parse().unwrap());
        check("signature", v.verify_with(&h, &creds(), signed_at()));
        // An unsigned header may change freely.
        let mut h = v.header_map();
        h.insert("user-agent", "curl/8".parse().unwrap());
        h.insert("x-unsigned", "1".parse().unwrap());
        assert!(v.verify_with(&h, &creds(), signed_at()).is_ok());
    }
    // The body is covered.
    let headers = CREATE.header_map();
    let tampered = CREATE.body.replace("\"Timeout\": 30", "\"Timeout\": 31");
    let parts = RequestParts {
        method: "POST",
        path: CREATE.path,
        query: None,
        headers: &headers,
        body: tampered.as_bytes(),
    };
    check("body", verify(&parts, &creds(), signed_at()));
    // A signed header's value.
    let mut h = CREATE.header_map();
    h.insert("content-type", "text/plain".parse().unwrap());
    check(
        "content-type",
        CREATE.verify_with(&h, &creds(), signed_at()),
    );
    let mut h = UPDATE_CONFIG.header_map();
    h.insert("x-custom", "a b c".parse().unwrap());
    check(
        "x-custom",
        UPDATE_CONFIG.verify_with(&h, &creds(), signed_at()),
    );
    // Spaces inside a value collapse: the same value spelt with other spaces verifies.
    h.insert("x-custom", "a b".parse().unwrap());
    assert!(UPDATE_CONFIG.verify_with(&h, &creds(), signed_at()).is_ok());
}

#[test]
fn the_body_hash_header_must_match_the_body() {
    let headers = UPDATE_CONFIG.header_map();
    let parts = RequestParts {
        method: "PUT",
        path: UPDATE_CONFIG.path,
        query: None,
        headers: &headers,
        body: b"{\"Timeout\": 61, \"MemorySize\": 256}",
    };
    let e = verify(&parts, &creds(), signed_at()).unwrap_err();
    assert!(matches!(e, AuthError::BodyHash(_)), "{e:?}");
    assert!(e.to_string().contains("SHA-256"), "{e}");
    let mut h = UPDATE_CONFIG.header_map();
    h.insert("x-amz-content-sha256", "UNSIGNED-PAYLOAD".parse().unwrap());
    let e = UPDATE_CONFIG
        .verify_with(&h, &creds(), signed_at())
        .unwrap_err();
    assert!(matches!(e, AuthError::BodyHash(_)), "{e:?}");
}

#[test]
fn clock_skew_is_bounded_to_15_minutes() {
    let t = signed_at();
    let min = Duration::from_secs(60);
    for now in [t + 15 * min, t - 15 * min, t + 14 * min, t - 14 * min] {
        assert!(LIST.verify_with(&LIST.header_map(), &creds(), now).is_ok());
    }
    let e = LIST
        .verify_with(
            &LIST.header_map(),
            &creds(),
            t + 15 * min + Duration::from_secs(1),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Signature expired: 20261202T030405Z is now earlier than 20261202T030406Z \
         (20261202T031906Z - 15 min.)"
    );
    let e = LIST
        .verify_with(&LIST.header_map(), &creds(), t - 16 * min)
        .unwrap_err();
    assert!(matches!(e, AuthError::NotYetCurrent { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("Signature not yet current: 20261202T030405Z"),
        "{e}"
    );
    // Outside the window even a perfect signature of that time is refused.
    let e = LIST
        .verify_with(&LIST.header_map(), &creds(), t + 60 * min)
        .unwrap_err();
    assert!(matches!(e, AuthError::Expired { .. }), "{e:?}");
}

#[test]
fn unknown_keys_tokens_and_bad_headers_are_named() {
    let other = Credentials::new("AKIDOTHER", SECRET_KEY).unwrap();
    assert_eq!(
        LIST.verify_with(&LIST.header_map(), &other, signed_at()),
        Err(AuthError::UnknownKey)
    );
    let mut h = LIST.header_map();
    h.insert("x-amz-security-token", "token".parse().unwrap());
    assert_eq!(
        LIST.verify_with(&h, &creds(), signed_at()),
        Err(AuthError::SessionToken)
    );
    let mut h = LIST.header_map();
    h.remove("authorization");
    assert_eq!(
        LIST.verify_with(&h, &creds(), signed_at()),
        Err(AuthError::Missing)
    );
    assert!(!is_signed(&h));
    assert!(is_signed(&LIST.header_map()));
    let mut h = LIST.header_map();
    h.remove("x-amz-date");
    let e = LIST.verify_with(&h, &creds(), signed_at()).unwrap_err();
    assert!(e.to_string().contains("X-Amz-Date"), "{e}");

    let good = "Credential=AKIDEXAMPLE/20261202/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=4c63dd5bd58741d3f942c8a4b70c07ce010602d2ad318d1c76652db95f405951";
    for (auth, needle) in [
        (format!("AWS4-HMAC-SHA512 {good}"), "algorithm must be AWS4-HMAC-SHA256"),
        ("AWS AKIDEXAMPLE:abc".to_owned(), "algorithm must be"),
        (
            "AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=4c63dd5bd58741d3f942c8a4b70c07ce010602d2ad318d1c76652db95f405951".to_owned(),
            "requires 'Credential' parameter",
        ),
        (
            format!("AWS4-HMAC-SHA256 {}", good.replace("Signature=4c63", "Signature=zz63")),
            "64 hexadecimal",
        ),
        (
            format!("AWS4-HMAC-SHA256 {}", good.replace("host;x-amz-date", "x-amz-date")),
            "'host' must be a 'SignedHeader'",
        ),
        (
            format!("AWS4-HMAC-SHA256 {}", good.replace("host;x-amz-date", "host")),
            "'x-amz-date' must be a 'SignedHeader'",
        ),
        (
            format!("AWS4-HMAC-SHA256 {}", good.replace("host;", "host;content-type;")),
            "content-type is not in the request",
        ),
        (
            format!("AWS4-HMAC-SHA256 {}", good.replace("host;", "Host;")),
            "lower-case",
        ),
        (
            format!("AWS4-HMAC-SHA256 {}", good.replace("host;", "host;host;")),
            "listed twice",
        ),
        (
            format!("AWS4-HMAC-SHA256 {}", good.replace("/lambda/", "/s3/")),
            "scoped to correct service: 'lambda'",
        ),
        (
            format!("AWS4-HMAC-SHA256 {}", good.replace("/20261202/", "/20261201/")),
            "'20261201' != '20261202'",
        ),
        (
            format!("AWS4-HMAC-SHA256 {}", good.replace("/us-east-1/", "/US East/")),
            "valid region",
        ),
        (
            format!("AWS4-HMAC-SHA256 {}", good.replace("aws4_request", "aws5_request")),
            "valid terminator",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=4c63dd5bd58741d3f942c8a4b70c07ce010602d2ad318d1c76652db95f405951".to_owned(),
            "must be <access key>/<date>/<region>/lambda/aws4_request",
        ),
        (format!("AWS4-HMAC-SHA256 {good}, Extra=1"), "unknown parameter"),
    ] {
        let mut h = LIST.header_map();
        h.insert("authorization", auth.parse().unwrap());
        let e = LIST.verify_with(&h, &creds(), signed_at()).unwrap_err();
        assert!(e.to_string().contains(needle), "{auth}: {e}");
    }
}

#[test]
fn sign_matches_botocore_and_verifies() {
    for v in ALL {
        // What botocore signed: the headers of the request but User-Agent, Authorization,
        // X-Amz-Date, Content-Length and the SDK's headers added after signing.
        let signed: Vec<&str> = v
            .signature_headers()
            .into_iter()
            .filter(|n| *n != "host" && *n != "x-amz-date")
            .collect();
        let mut headers = vec![("User-Agent", USER_AGENT)];
        for (name, value) in v.headers {
            if signed.contains(&name.to_ascii_lowercase().as_str()) {
                headers.push((name, value));
            }
        }
        let url = match v.query {
            Some(q) => format!("http://{}{}?{q}", v.host, v.path),
            None => format!("http://{}{}", v.host, v.path),
        };
        let region = if v.host == "localhost:8080" {
            "eu-west-3"
        } else {
            "us-east-1"
        };
        let added = sign(
            v.method,
            &url,
            &headers,
            v.body.as_bytes(),
            &creds(),
            region,
            signed_at(),
        )
        .unwrap();
        let auth = &added.iter().find(|(n, _)| *n == "authorization").unwrap().1;
        let expected = v
            .headers
            .iter()
            .find(|(n, _)| *n == "Authorization")
            .unwrap()
            .1;
        assert_eq!(auth, expected, "{} {}", v.method, v.path);
        assert!(
            added.contains(&("x-amz-date", AMZ_DATE.to_owned())),
            "{added:?}"
        );
        // And what it signs verifies.
        let mut map = HeaderMap::new();
        map.insert("host", v.host.parse().unwrap());
        for (n, val) in headers
            .iter()
            .copied()
            .chain(added.iter().map(|(n, v)| (*n, v.as_str())))
        {
            map.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                val.parse().unwrap(),
            );
        }
        let parts = RequestParts {
            method: v.method,
            path: v.path,
            query: v.query,
            headers: &map,
            body: v.body.as_bytes(),
        };
        assert!(verify(&parts, &creds(), signed_at() + Duration::from_secs(60)).is_ok());
        assert!(!v.signature().is_empty());
    }
}

#[test]
fn sign_refuses_what_it_cannot_sign() {
    let now = signed_at();
    let e = sign("GET", "/no/host", &[], b"", &creds(), "us-east-1", now).unwrap_err();
    assert!(e.to_string().contains("no host"), "{e}");
    let e = sign("GET", "http://h/", &[], b"", &creds(), "US", now).unwrap_err();
    assert!(e.to_string().contains("region"), "{e}");
    let e = sign(
        "GET",
        "http://h/ space",
        &[],
        b"",
        &creds(),
        "us-east-1",
        now,
    )
    .unwrap_err();
    assert!(e.to_string().contains("http://h/ space"), "{e}");
    // Sub-second times are signed as their whole second, as X-Amz-Date says.
    let a = sign("GET", "http://h/", &[], b"", &creds(), "us-east-1", now).unwrap();
    let b = sign(
        "GET",
        "http://h/",
        &[],
        b"",
        &creds(),
        "us-east-1",
        now + Duration::from_millis(999),
    )
    .unwrap();
    assert_eq!(a, b);
}

#[test]
fn amz_dates_round_trip() {
    let t = parse_amz_date("20261202T030405Z").unwrap();
    assert_eq!(
        t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
        1_796_180_645
    );
    assert_eq!(format_amz_date(t), "20261202T030405Z");
    for bad in [
        "",
        "20261202",
        "20261302T030405Z",
        "20261202T030405",
        "2026-12-02T03:04:05Z",
    ] {
        assert!(parse_amz_date(bad).is_none(), "{bad}");
    }
}

impl Vector {
    /// The names in the vector's `SignedHeaders`.
    fn signature_headers(&self) -> Vec<&'static str> {
        let auth = self
            .headers
            .iter()
            .find(|(n, _)| *n == "Authorization")
            .unwrap()
            .1;
        let list = auth.split("SignedHeaders=").nth(1).unwrap();
        list.split(',').next().unwrap().split(';').collect()
    }
}
