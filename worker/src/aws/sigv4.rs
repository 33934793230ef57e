//! AWS Signature Version 4: checking the signature of a request that boto3, botocore or
//! aws-cli signed, and signing a request for the `admin` CLI.
//!
//! The signature is computed by the `aws-sigv4` crate (AWS's own), over exactly the headers the
//! client listed in `SignedHeaders`, at the time of its `X-Amz-Date`, for the region of its
//! credential scope and the service `lambda`, with the path encoded twice and normalized (as
//! for every service but S3) and the SHA-256 of the exact body bytes. It is compared in
//! constant time.
//!
//! Verification, in order:
//! 1. `Authorization: AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/lambda/aws4_request,
//!    SignedHeaders=<names>, Signature=<64 hex>` is parsed (a malformed header:
//!    `IncompleteSignatureException`).
//! 2. The access key is the platform's (compared in constant time), else
//!    `UnrecognizedClientException`. A request carrying `X-Amz-Security-Token` (temporary
//!    credentials, which this platform never issues) is refused the same way.
//! 3. The scope: the date is that of `X-Amz-Date`, the service `lambda`, the terminator
//!    `aws4_request`; any region is accepted and signed for.
//! 4. `host` and `x-amz-date` are among the signed headers, and every signed header is present.
//! 5. `X-Amz-Date` is within 15 minutes of now (`Signature expired` / `Signature not yet
//!    current`, as AWS words them).
//! 6. An `x-amz-content-sha256` header, if sent, is the SHA-256 of the body (never
//!    `UNSIGNED-PAYLOAD`: the signature always covers the body).
//! 7. The signature computed with the secret key equals the one given.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningParams,
    SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::credentials::Credentials;

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service in every credential scope.
pub const SERVICE: &str = "lambda";
/// How far `X-Amz-Date` may be from now, either way (AWS's 15 minutes).
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

const DATE_TIME_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");

/// Why a request's signature is not accepted. [`super::errors`] maps each to AWS's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("Missing Authentication Token")]
    Missing,
    /// The `Authorization` header or a header it depends on is malformed.
    #[error("{0}")]
    Incomplete(String),
    /// Not the platform's access key.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    #[error(
        "The security token included in the request is invalid. This platform issues no \
         temporary credentials: sign with its access key and secret key, without \
         X-Amz-Security-Token (unset AWS_SESSION_TOKEN)."
    )]
    SessionToken,
    /// The credential scope is not one this service signs for.
    #[error("{0}")]
    Scope(String),
    #[error("Signature expired: {signed} is now earlier than {earliest} ({now} - 15 min.)")]
    Expired {
        signed: String,
        earliest: String,
        now: String,
    },
    #[error("Signature not yet current: {signed} is still later than {latest} ({now} + 15 min.)")]
    NotYetCurrent {
        signed: String,
        latest: String,
        now: String,
    },
    #[error("{0}")]
    BodyHash(String),
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. Consult the service \
         documentation for details."
    )]
    Mismatch,
    /// The crate could not compute a signature for these parts (a URI it cannot parse).
    #[error("the request cannot be signed: {0}")]
    Unsignable(String),
}

/// What a verified signature said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key: String,
    /// The region of the credential scope.
    pub region: String,
    /// `X-Amz-Date`.
    pub signed_at: SystemTime,
}

/// The parts of a request the signature covers, as received.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The path as received, still percent-encoded.
    pub path: &'a str,
    /// The query string as received, without `?`.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// The parsed `Authorization` header.
#[derive(Debug)]
struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn incomplete(message: impl Into<String>) -> AuthError {
    AuthError::Incomplete(message.into())
}

fn parse_authorization<'a>(value: &'a str) -> Result<Authorization<'a>, AuthError> {
    let Some(rest) = value
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
    else {
        let algorithm = value.split(' ').next().unwrap_or_default();
        return Err(incomplete(format!(
            "Authorization header: the algorithm must be {ALGORITHM}, not {algorithm:?}"
        )));
    };
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, val)) = part.split_once('=') else {
            return Err(incomplete(format!(
                "Authorization header: {part:?} is not key=value"
            )));
        };
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => {
                return Err(incomplete(format!(
                    "Authorization header: unknown parameter {key:?}"
                )))
            }
        };
        if slot.replace(val).is_some() {
            return Err(incomplete(format!(
                "Authorization header: {key} is given twice"
            )));
        }
    }
    let require = |v: Option<&'a str>, name: &str| {
        v.ok_or_else(|| {
            incomplete(format!(
                "Authorization header requires '{name}' parameter. Authorization={value}"
            ))
        })
    };
    let credential = require(credential, "Credential")?;
    let signed_headers = require(signed_headers, "SignedHeaders")?;
    let signature = require(signature, "Signature")?;
    // The access key may hold '/': the four fixed parts are taken from the right.
    let mut parts = credential.rsplitn(5, '/');
    let (Some(terminator), Some(service), Some(region), Some(date), Some(access_key)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(incomplete(format!(
            "Credential={credential}: it must be <access key>/<date>/<region>/{SERVICE}/aws4_request"
        )));
    };
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(incomplete(
            "Signature must be 64 hexadecimal digits".to_owned(),
        ));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    for (i, name) in names.iter().enumerate() {
        let valid = !name.is_empty()
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$%&'*+^`|~".contains(&b)
            });
        if !valid {
            return Err(incomplete(format!(
                "SignedHeaders={signed_headers}: {name:?} is not a lower-case header name"
            )));
        }
        if names[..i].contains(name) {
            return Err(incomplete(format!(
                "SignedHeaders={signed_headers}: {name} is listed twice"
            )));
        }
    }
    Ok(Authorization {
        access_key,
        date,
        region,
        service,
        terminator,
        signed_headers: names,
        signature,
    })
}

/// `20261202T030405Z` for a time.
pub fn format_amz_date(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(DATE_TIME_FORMAT)
        .unwrap_or_default()
}

/// Parses `20261202T030405Z`.
pub fn parse_amz_date(raw: &str) -> Option<SystemTime> {
    let t = time::PrimitiveDateTime::parse(raw, DATE_TIME_FORMAT).ok()?;
    Some(t.assume_utc().into())
}

/// Whether the request carries an `Authorization` header (signed, well or not).
pub fn is_signed(headers: &HeaderMap) -> bool {
    headers.contains_key(http::header::AUTHORIZATION)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AuthError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| incomplete(format!("header {name} is not printable ASCII"))),
    }
}

fn check_skew(signed_at: SystemTime, raw: &str, now: SystemTime) -> Result<(), AuthError> {
    if signed_at + MAX_SKEW < now {
        return Err(AuthError::Expired {
            signed: raw.to_owned(),
            earliest: format_amz_date(now - MAX_SKEW),
            now: format_amz_date(now),
        });
    }
    if signed_at > now + MAX_SKEW {
        return Err(AuthError::NotYetCurrent {
            signed: raw.to_owned(),
            latest: format_amz_date(now + MAX_SKEW),
            now: format_amz_date(now),
        });
    }
    Ok(())
}

fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The headers `aws-sigv4` adds, and the signature.
type Computed = (Vec<(&'static str, String)>, String);

/// The signature `aws-sigv4` computes for `headers` (exactly those, in any order) at `time`.
#[allow(clippy::too_many_arguments)]
fn compute(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    creds: &Credentials,
    region: &str,
    time: SystemTime,
    settings: SigningSettings,
) -> Result<Computed, AuthError> {
    let identity = aws_credential_types::Credentials::new(
        creds.access_key(),
        creds.secret_key(),
        None,
        None,
        "lambdaworker",
    )
    .into();
    let params: SigningParams<'_> = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| AuthError::Unsignable(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        method,
        uri,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| AuthError::Unsignable(e.to_string()))?;
    let (instructions, signature) = aws_sigv4::http_request::sign(signable, &params)
        .map_err(|e| AuthError::Unsignable(e.to_string()))?
        .into_parts();
    let (headers, _params) = instructions.into_parts();
    let headers = headers
        .into_iter()
        .map(|h| (h.name(), h.value().to_owned()))
        .collect();
    Ok((headers, signature))
}

/// The settings boto3 and aws-cli sign Lambda requests with: the path encoded twice and
/// normalized, no `x-amz-content-sha256` added.
fn lambda_settings() -> SigningSettings {
    let mut s = SigningSettings::default();
    s.percent_encoding_mode = PercentEncodingMode::Double;
    s.uri_path_normalization_mode = UriPathNormalizationMode::Enabled;
    s.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    s
}

/// Checks the signature of a request (see the module docs for the order of the checks).
pub fn verify(
    req: &RequestParts<'_>,
    creds: &Credentials,
    now: SystemTime,
) -> Result<Verified, AuthError> {
    let Some(raw) = header_str(req.headers, "authorization")? else {
        return Err(AuthError::Missing);
    };
    let auth = parse_authorization(raw)?;
    let key_matches: bool = auth
        .access_key
        .as_bytes()
        .ct_eq(creds.access_key().as_bytes())
        .into();
    if !key_matches {
        return Err(AuthError::UnknownKey);
    }
    if req.headers.contains_key("x-amz-security-token") {
        return Err(AuthError::SessionToken);
    }
    let Some(amz_date) = header_str(req.headers, "x-amz-date")? else {
        return Err(incomplete(
            "Authorization header requires existence of a 'X-Amz-Date' header (a 'Date' \
             header is not accepted)",
        ));
    };
    let Some(signed_at) = parse_amz_date(amz_date) else {
        return Err(incomplete(format!(
            "X-Amz-Date {amz_date:?} is not of the form 20261202T030405Z"
        )));
    };
    if auth.service != SERVICE {
        return Err(AuthError::Scope(format!(
            "Credential should be scoped to correct service: '{SERVICE}'."
        )));
    }
    if auth.terminator != "aws4_request" {
        return Err(AuthError::Scope(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
            auth.terminator
        )));
    }
    if !valid_region(auth.region) {
        return Err(AuthError::Scope(
            "Credential should be scoped to a valid region.".to_owned(),
        ));
    }
    if auth.date != &amz_date[..8] {
        return Err(AuthError::Scope(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{}', from '{amz_date}'.",
            auth.date,
            &amz_date[..8]
        )));
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.contains(&required) {
            return Err(incomplete(format!(
                "'{required}' must be a 'SignedHeader' in the AWS Authorization."
            )));
        }
    }
    let mut headers = Vec::with_capacity(auth.signed_headers.len());
    for &name in &auth.signed_headers {
        let mut present = false;
        for value in req.headers.get_all(name) {
            let value = value
                .to_str()
                .map_err(|_| incomplete(format!("header {name} is not printable ASCII")))?;
            headers.push((name, value));
            present = true;
        }
        if !present {
            return Err(incomplete(format!(
                "the signed header {name} is not in the request"
            )));
        }
    }
    check_skew(signed_at, amz_date, now)?;
    if let Some(claimed) = header_str(req.headers, "x-amz-content-sha256")? {
        let actual = crate::hex(&Sha256::digest(req.body));
        if claimed != actual {
            return Err(AuthError::BodyHash(format!(
                "x-amz-content-sha256 is {claimed:?}, but the body's SHA-256 is {actual}: \
                 the signature must cover the body"
            )));
        }
    }
    let uri = match req.query {
        Some(q) if !q.is_empty() => format!("{}?{q}", req.path),
        _ => req.path.to_owned(),
    };
    let mut settings = lambda_settings();
    // Exactly the headers the client signed, none dropped (a client may sign User-Agent).
    settings.excluded_headers = None;
    let (_, expected) = compute(
        req.method,
        &uri,
        &headers,
        req.body,
        creds,
        auth.region,
        signed_at,
        settings,
    )?;
    let equal: bool = expected
        .as_bytes()
        .ct_eq(auth.signature.to_ascii_lowercase().as_bytes())
        .into();
    if !equal {
        return Err(AuthError::Mismatch);
    }
    Ok(Verified {
        access_key: auth.access_key.to_owned(),
        region: auth.region.to_owned(),
        signed_at,
    })
}

/// Why a request cannot be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot sign a request to {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot sign for region {0:?}: a region is lower-case letters, digits and '-'")]
    Region(String),
    #[error("cannot sign the request: {0}")]
    Signing(String),
}

/// Signs a request as boto3 signs a Lambda call: returns the headers to add
/// (`authorization` and `x-amz-date`). `url` is absolute (`http://host:port/path?query`,
/// percent-encoded as it will be sent); `headers` are those the request will carry
/// (`User-Agent` and the like are left out of the signature, as botocore does). The request
/// must be sent with a `Host` header equal to the URL's authority (without a default port)
/// unless `headers` gives one.
pub fn sign(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    creds: &Credentials,
    region: &str,
    now: SystemTime,
) -> Result<Vec<(&'static str, String)>, SignError> {
    let bad_url = |reason: &str| SignError::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad_url(&e.to_string()))?;
    let has_host = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host"));
    if uri.host().is_none() && !has_host {
        return Err(bad_url("it has no host"));
    }
    if !valid_region(region) {
        return Err(SignError::Region(region.to_owned()));
    }
    // Whole seconds, as X-Amz-Date carries them.
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| SignError::Signing("the clock is before 1970".to_owned()))?
        .as_secs();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    let (added, _) = compute(
        method,
        url,
        headers,
        body,
        creds,
        region,
        now,
        lambda_settings(),
    )
    .map_err(|e| SignError::Signing(e.to_string()))?;
    Ok(added)
}

#[cfg(test)]
#[path = "sigv4_tests.rs"]
pub(crate) mod tests;
