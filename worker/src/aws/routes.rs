//! Which AWS Lambda operation a request is: the method and path of every operation of the
//! Lambda API (botocore's `lambda` model, 2015-03-31), matched segment by segment; a `{Label}`
//! is one percent-encoded segment, decoded here.

use super::errors::AwsError;
use super::operations::OPERATIONS;

/// The operations this platform implements, and the name of any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    CreateFunction,
    GetFunction,
    GetFunctionConfiguration,
    ListFunctions,
    UpdateFunctionCode,
    UpdateFunctionConfiguration,
    DeleteFunction,
    PublishLayerVersion,
    ListLayers,
    ListLayerVersions,
    GetLayerVersion,
    GetLayerVersionByArn,
    ListTags,
    TagResource,
    UntagResource,
    PutEventInvokeConfig,
    GetEventInvokeConfig,
    UpdateEventInvokeConfig,
    DeleteEventInvokeConfig,
    ListEventInvokeConfigs,
    /// Answered by the invoke API (`crate::invoke`), not here.
    Invoke,
    /// The deprecated asynchronous invoke; answered by the invoke API too.
    InvokeAsync,
    /// An operation of the Lambda API this platform does not implement.
    Unsupported(&'static str),
}

impl Op {
    /// AWS's name of the operation.
    pub fn name(&self) -> &'static str {
        match self {
            Op::CreateFunction => "CreateFunction",
            Op::GetFunction => "GetFunction",
            Op::GetFunctionConfiguration => "GetFunctionConfiguration",
            Op::ListFunctions => "ListFunctions",
            Op::UpdateFunctionCode => "UpdateFunctionCode",
            Op::UpdateFunctionConfiguration => "UpdateFunctionConfiguration",
            Op::DeleteFunction => "DeleteFunction",
            Op::PublishLayerVersion => "PublishLayerVersion",
            Op::ListLayers => "ListLayers",
            Op::ListLayerVersions => "ListLayerVersions",
            Op::GetLayerVersion => "GetLayerVersion",
            Op::GetLayerVersionByArn => "GetLayerVersionByArn",
            Op::ListTags => "ListTags",
            Op::TagResource => "TagResource",
            Op::UntagResource => "UntagResource",
            Op::PutEventInvokeConfig => "PutFunctionEventInvokeConfig",
            Op::GetEventInvokeConfig => "GetFunctionEventInvokeConfig",
            Op::UpdateEventInvokeConfig => "UpdateFunctionEventInvokeConfig",
            Op::DeleteEventInvokeConfig => "DeleteFunctionEventInvokeConfig",
            Op::ListEventInvokeConfigs => "ListFunctionEventInvokeConfigs",
            Op::Invoke => "Invoke",
            Op::InvokeAsync => "InvokeAsync",
            Op::Unsupported(name) => name,
        }
    }

    /// The operations implemented here, for messages.
    pub fn supported() -> impl Iterator<Item = &'static str> {
        OPERATIONS.iter().filter_map(|(_, _, op)| match op {
            Op::Unsupported(_) => None,
            op => Some(op.name()),
        })
    }
}

/// A request matched to an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub op: Op,
    /// The path's `{Label}` values, decoded, in order.
    pub labels: Vec<String>,
    /// The operation's path template, for messages.
    pub template: &'static str,
}

/// Whether `path` is one of the Lambda API's: it starts with a `/YYYY-MM-DD/` version, as every
/// operation's path does (`/2015-03-31/functions`, `/2017-03-31/tags/...`,
/// `/2018-10-31/layers`, ...). No other path of the worker or the registry server looks so.
pub fn is_api_path(path: &str) -> bool {
    let b = path.as_bytes();
    b.len() >= 12
        && b[0] == b'/'
        && b[11] == b'/'
        && b[5] == b'-'
        && b[8] == b'-'
        && [1, 2, 3, 4, 6, 7, 9, 10]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
}

/// Decodes one percent-encoded path segment or query value.
pub fn decode(raw: &str, what: &str) -> Result<String, AwsError> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| AwsError::invalid(format!("{what} {raw:?} is not percent-encoded UTF-8")))
}

/// Whether `segments` match `template`'s (a `{Label}` matches any one non-empty segment).
fn matches(template: &str, segments: &[&str]) -> bool {
    let parts: Vec<&str> = template.split('/').skip(1).collect();
    parts.len() == segments.len()
        && parts.iter().zip(segments).all(|(part, seg)| {
            if part.starts_with('{') && part.ends_with('}') {
                !seg.is_empty()
            } else {
                part == seg
            }
        })
}

/// Whether the query holds `key=value` exactly.
fn query_has(query: Option<&str>, pair: &str) -> bool {
    query.is_some_and(|q| q.split('&').any(|p| p == pair))
}

/// The operation of `method` and `path` (percent-encoded, as received).
pub fn route(method: &str, path: &str, query: Option<&str>) -> Result<Route, AwsError> {
    // `/2015-03-31/functions/` (older botocore) is `/2015-03-31/functions`.
    let trimmed = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => path,
    };
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    let mut path_known = false;
    // Templates with a fixed query (`/2018-10-31/layers?find=LayerVersion`) come first.
    let mut rows: Vec<&(&str, &str, Op)> = OPERATIONS.iter().collect();
    rows.sort_by_key(|(_, t, _)| !t.contains('?'));
    for (m, template, op) in rows {
        let (tpath, tquery) = match template.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (*template, None),
        };
        if !matches(tpath, &segments) {
            continue;
        }
        path_known = true;
        if *m != method || tquery.is_some_and(|pair| !query_has(query, pair)) {
            continue;
        }
        let parts: Vec<&str> = tpath.split('/').skip(1).collect();
        let mut labels = Vec::new();
        for (part, seg) in parts.iter().zip(&segments) {
            if part.starts_with('{') {
                let what = part.trim_start_matches('{').trim_end_matches('}');
                labels.push(decode(seg, what)?);
            }
        }
        return Ok(Route {
            op: *op,
            labels,
            template,
        });
    }
    let message = if path_known {
        format!("no Lambda operation is {method} {path}")
    } else {
        format!("no Lambda operation has the path {path}")
    };
    Err(AwsError::new(
        http::StatusCode::BAD_REQUEST,
        "UnknownOperationException",
        message,
    ))
}

/// The query's `key=value` pairs, decoded; at most `MAX_QUERY_PAIRS`.
pub fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, AwsError> {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return Ok(Vec::new());
    };
    let mut pairs = Vec::new();
    for part in q.split('&').filter(|p| !p.is_empty()) {
        if pairs.len() == MAX_QUERY_PAIRS {
            return Err(AwsError::invalid(format!(
                "the query string has more than {MAX_QUERY_PAIRS} parameters"
            )));
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        pairs.push((decode(k, "query parameter")?, decode(v, "query value")?));
    }
    Ok(pairs)
}

/// Most query parameters read (50 tag keys and a few more).
pub const MAX_QUERY_PAIRS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_start_with_a_version_date() {
        for p in [
            "/2015-03-31/functions",
            "/2015-03-31/functions/",
            "/2017-03-31/tags/x",
            "/2018-10-31/layers",
            "/2019-09-25/functions/f/event-invoke-config",
        ] {
            assert!(is_api_path(p), "{p}");
        }
        for p in [
            "/runLambda/f",
            "/stats",
            "/",
            "",
            "/2015-03-31",
            "/registry/archives/ab",
            "/2015-3-31/functions",
            "/abcd-ef-gh/x",
        ] {
            assert!(!is_api_path(p), "{p}");
        }
    }

    #[test]
    fn every_supported_operation_routes() {
        let arn = "arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Ahello";
        for (method, path, query, op, labels) in [
            (
                "POST",
                "/2015-03-31/functions",
                None,
                Op::CreateFunction,
                vec![],
            ),
            (
                "GET",
                "/2015-03-31/functions",
                None,
                Op::ListFunctions,
                vec![],
            ),
            (
                "GET",
                "/2015-03-31/functions/",
                Some("MaxItems=1"),
                Op::ListFunctions,
                vec![],
            ),
            (
                "GET",
                "/2015-03-31/functions/f",
                None,
                Op::GetFunction,
                vec!["f"],
            ),
            (
                "GET",
                &format!("/2015-03-31/functions/{arn}") as &str,
                None,
                Op::GetFunction,
                vec!["arn:aws:lambda:us-east-1:000000000000:function:hello"],
            ),
            (
                "GET",
                "/2015-03-31/functions/f/configuration",
                None,
                Op::GetFunctionConfiguration,
                vec!["f"],
            ),
            (
                "PUT",
                "/2015-03-31/functions/f/configuration",
                None,
                Op::UpdateFunctionConfiguration,
                vec!["f"],
            ),
            (
                "PUT",
                "/2015-03-31/functions/f/code",
                None,
                Op::UpdateFunctionCode,
                vec!["f"],
            ),
            (
                "DELETE",
                "/2015-03-31/functions/f",
                None,
                Op::DeleteFunction,
                vec!["f"],
            ),
            (
                "POST",
                "/2015-03-31/functions/f/invocations",
                None,
                Op::Invoke,
                vec!["f"],
            ),
            (
                "POST",
                "/2018-10-31/layers/l/versions",
                None,
                Op::PublishLayerVersion,
                vec!["l"],
            ),
            ("GET", "/2018-10-31/layers", None, Op::ListLayers, vec![]),
            (
                "GET",
                "/2018-10-31/layers",
                Some("find=LayerVersion&Arn=x"),
                Op::GetLayerVersionByArn,
                vec![],
            ),
            (
                "GET",
                "/2018-10-31/layers/l/versions",
                None,
                Op::ListLayerVersions,
                vec!["l"],
            ),
            (
                "GET",
                "/2018-10-31/layers/l/versions/3",
                None,
                Op::GetLayerVersion,
                vec!["l", "3"],
            ),
            (
                "GET",
                &format!("/2017-03-31/tags/{arn}") as &str,
                None,
                Op::ListTags,
                vec!["arn:aws:lambda:us-east-1:000000000000:function:hello"],
            ),
            (
                "POST",
                "/2017-03-31/tags/x",
                None,
                Op::TagResource,
                vec!["x"],
            ),
            (
                "DELETE",
                "/2017-03-31/tags/x",
                Some("tagKeys=a"),
                Op::UntagResource,
                vec!["x"],
            ),
        ] {
            let r = route(method, path, query).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            assert_eq!(r.op, op, "{method} {path}");
            assert_eq!(r.labels, labels, "{method} {path}");
        }
    }

    #[test]
    fn other_operations_are_named_and_unknown_paths_refused() {
        for (method, path, name) in [
            ("POST", "/2015-03-31/functions/f/policy", "AddPermission"),
            ("GET", "/2016-08-19/account-settings", "GetAccountSettings"),
            ("POST", "/2015-03-31/functions/f/versions", "PublishVersion"),
            ("GET", "/2015-03-31/functions/f/aliases", "ListAliases"),
            (
                "PUT",
                "/2017-10-31/functions/f/concurrency",
                "PutFunctionConcurrency",
            ),
            (
                "GET",
                "/2019-09-30/functions/f/provisioned-concurrency",
                "GetProvisionedConcurrencyConfig",
            ),
        ] {
            let r = route(method, path, None).unwrap();
            assert_eq!(r.op, Op::Unsupported(name), "{method} {path}");
        }
        let r = route(
            "GET",
            "/2019-09-30/functions/f/provisioned-concurrency",
            Some("List=ALL"),
        )
        .unwrap();
        assert_eq!(r.op.name(), "ListProvisionedConcurrencyConfigs");
        let e = route("PATCH", "/2015-03-31/functions/f", None).unwrap_err();
        assert_eq!(e.code, "UnknownOperationException");
        assert!(e.message.contains("PATCH /2015-03-31/functions/f"), "{e}");
        let e = route("GET", "/2015-03-31/nothing/here", None).unwrap_err();
        assert!(e.message.contains("/2015-03-31/nothing/here"), "{e}");
        let e = route("GET", "/2015-03-31/functions/%FF", None).unwrap_err();
        assert_eq!(e.code, "InvalidParameterValueException");
        assert!(e.message.contains("FunctionName"), "{e}");
        assert!(Op::supported().any(|n| n == "CreateFunction"));
        assert!(Op::supported().any(|n| n == "Invoke"));
        assert!(Op::supported().any(|n| n == "PutFunctionEventInvokeConfig"));
        assert!(!Op::supported().any(|n| n == "CreateAlias"));
    }

    #[test]
    fn query_pairs_are_decoded_and_bounded() {
        assert_eq!(
            query_pairs(Some("tagKeys=a%20b&tagKeys=c&x")).unwrap(),
            vec![
                ("tagKeys".to_owned(), "a b".to_owned()),
                ("tagKeys".to_owned(), "c".to_owned()),
                ("x".to_owned(), String::new())
            ]
        );
        assert!(query_pairs(None).unwrap().is_empty());
        let many = vec!["a=1"; MAX_QUERY_PAIRS + 1].join("&");
        assert!(query_pairs(Some(&many)).is_err());
        assert!(query_pairs(Some("a=%FF")).is_err());
    }
}
