//! The dashboard: one static page at `/` (and `/dashboard`) that draws the worker's `/stats`
//! (functions, sandboxes, zygotes, call rates and latency percentiles as small charts) and
//! refreshes every two seconds. The page, its script and its style ship in the binary; the
//! page loads nothing from anywhere else, which its Content-Security-Policy enforces.

use std::sync::OnceLock;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// One of the dashboard's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Page,
    Script,
    Style,
}

/// Where the page's files are served from (the page names them so).
pub const ASSET_PREFIX: &str = "/dashboard/";

/// Allows the page's own files and `fetch("/stats")` only: no inline script or style, no
/// other origin, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

impl Asset {
    const ALL: [Asset; 3] = [Asset::Page, Asset::Script, Asset::Style];

    fn body(self) -> &'static str {
        match self {
            Asset::Page => include_str!("index.html"),
            Asset::Script => include_str!("dashboard.js"),
            Asset::Style => include_str!("dashboard.css"),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Asset::Page => "text/html; charset=utf-8",
            Asset::Script => "text/javascript; charset=utf-8",
            Asset::Style => "text/css; charset=utf-8",
        }
    }

    /// A strong validator of the file's bytes, computed once.
    fn etag(self) -> &'static str {
        static TAGS: OnceLock<[String; 3]> = OnceLock::new();
        let tags = TAGS.get_or_init(|| {
            Asset::ALL.map(|a| {
                let digest = Sha256::digest(a.body().as_bytes());
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
        });
        &tags[self as usize]
    }
}

/// The dashboard's paths: `Some` for `/`, `/dashboard`, and anything under `/dashboard/`
/// (an unknown file there is a 404), `None` for every other path. `GET` and `HEAD` only.
pub fn route(method: &Method, path: &str) -> Option<Result<Asset, ApiError>> {
    let asset = match path {
        "/" | "/dashboard" | "/dashboard/" => Some(Asset::Page),
        _ => match path.strip_prefix(ASSET_PREFIX)? {
            "index.html" => Some(Asset::Page),
            "dashboard.js" => Some(Asset::Script),
            "dashboard.css" => Some(Asset::Style),
            _ => None,
        },
    };
    Some(match asset {
        None => Err(ApiError::NotFound {
            path: path.chars().take(200).collect(),
        }),
        Some(_) if *method != Method::GET && *method != Method::HEAD => {
            Err(ApiError::MethodNotAllowed {
                method: method.to_string(),
                path: path.to_owned(),
                allow: "GET, HEAD".into(),
            })
        }
        Some(asset) => Ok(asset),
    })
}

/// The file, or `304 Not Modified` when the request's `If-None-Match` names its tag. The
/// browser revalidates every load (`no-cache`), so a new worker's page is never stale.
pub fn serve(asset: Asset, request: &HeaderMap) -> Response<Full<Bytes>> {
    let etag = asset.etag();
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
        });
    let mut resp = if fresh {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(Full::new(Bytes::from_static(asset.body().as_bytes())))
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type()),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        for path in ["/", "/dashboard", "/dashboard/", "/dashboard/index.html"] {
            assert_eq!(route(&Method::GET, path).unwrap().unwrap(), Asset::Page);
            assert_eq!(route(&Method::HEAD, path).unwrap().unwrap(), Asset::Page);
        }
        assert_eq!(
            route(&Method::GET, "/dashboard/dashboard.js")
                .unwrap()
                .unwrap(),
            Asset::Script
        );
        assert_eq!(
            route(&Method::GET, "/dashboard/dashboard.css")
                .unwrap()
                .unwrap(),
            Asset::Style
        );
        let err = route(&Method::POST, "/").unwrap().unwrap_err();
        assert_eq!(err.status(), 405);
        let err = route(&Method::GET, "/dashboard/../stats")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.status(), 404);
        let err = route(&Method::GET, "/dashboard/nope.js")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.status(), 404);
        assert!(route(&Method::GET, "/stats").is_none());
        assert!(route(&Method::GET, "/dashboards").is_none());
    }

    #[test]
    fn the_page_names_its_own_files_and_nothing_else() {
        let page = Asset::Page.body();
        for (name, asset) in [
            ("dashboard.js", Asset::Script),
            ("dashboard.css", Asset::Style),
        ] {
            let href = format!("{ASSET_PREFIX}{name}");
            assert!(page.contains(&href), "the page does not load {href}");
            assert_eq!(route(&Method::GET, &href).unwrap().unwrap(), asset);
        }
        for body in Asset::ALL.map(Asset::body) {
            assert!(!body.contains("http://") || body.contains("http://www.w3.org/2000/svg"));
            assert!(!body.contains("https://"), "an asset loads from elsewhere");
            assert!(!body.contains("innerHTML"));
        }
        // No inline script or style: the policy would block them.
        assert!(!page.contains("<script>") && !page.contains("style="));
    }

    #[test]
    fn serves_with_its_headers_and_revalidates() {
        let resp = serve(Asset::Script, &HeaderMap::new());
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(h[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"));
        let etag = h[header::ETAG].clone();
        assert_ne!(
            etag,
            serve(Asset::Style, &HeaderMap::new()).headers()[header::ETAG]
        );

        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag.clone());
        let resp = serve(Asset::Script, &again);
        assert_eq!(resp.status(), 304);
        assert_eq!(resp.headers()[header::ETAG], etag);

        let mut other = HeaderMap::new();
        other.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"0000\""));
        assert_eq!(serve(Asset::Script, &other).status(), 200);
    }
}
