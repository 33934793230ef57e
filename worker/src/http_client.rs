//! A small HTTP/1.1 client: one request over one TCP connection, with hyper's client. Used by
//! `admin` (`/status`, `/stats`, the management API of a registry server), by workers in
//! registry mode (pulling code, forwarding management requests) and by tests.
//!
//! [`send`] is async; [`send_blocking`] runs it on the calling thread (inside a blocking-pool
//! thread of a runtime, on that runtime; elsewhere on a current-thread runtime of its own).
//! Bodies are read up to a limit.

use std::io;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{CONNECTION, HOST};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Largest response body accepted, in bytes.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// A response, its body read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The reason phrase of the status line as the server sent it (`OK`), possibly empty.
    pub reason: String,
    /// The body as text (invalid UTF-8 replaced); [`Response::bytes`] holds it exactly.
    pub body: String,
    pub bytes: Bytes,
    pub headers: HeaderMap,
}

impl Response {
    /// `200 OK`, as Go prints a response's status.
    pub fn status_text(&self) -> String {
        if self.reason.is_empty() {
            self.status.to_string()
        } else {
            format!("{} {}", self.status, self.reason)
        }
    }
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub host: String,
    pub port: u16,
    /// Path and query, as sent (`/2015-03-31/functions/?MaxItems=5`).
    pub path: String,
    /// Sent as given; `Host` is added when absent, `Connection: close` always.
    pub headers: HeaderMap,
    pub body: Bytes,
    /// For connecting, and again for the whole answer.
    pub timeout: Duration,
    /// Largest response body accepted, in bytes.
    pub limit: usize,
}

impl Request {
    /// A request with no headers and no body, the default limit.
    pub fn new(method: Method, host: &str, port: u16, path: &str, timeout: Duration) -> Self {
        Self {
            method,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            timeout,
            limit: MAX_RESPONSE,
        }
    }
}

/// `GET http://<host>:<port><path>`, with `timeout` for connecting and again for the answer.
pub fn get(host: &str, port: u16, path: &str, timeout: Duration) -> io::Result<Response> {
    get_limited(host, port, path, timeout, MAX_RESPONSE)
}

/// Sends `req` and reads the whole answer.
pub async fn send(req: Request) -> io::Result<Response> {
    let stream = connect(&req.host, req.port, req.timeout).await?;
    let timeout = req.timeout;
    within(timeout, exchange(stream, req)).await?
}

/// [`send`], blocking the calling thread (never call it on an async executor thread).
pub fn send_blocking(req: Request) -> io::Result<Response> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(send(req)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(send(req)),
    }
}

/// Splits `http://host[:port]` into host and port (80 by default).
pub fn split_url(url: &str) -> io::Result<(String, u16)> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{url:?} is not http://host[:port]"),
        )
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(bad)?
        .trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return Err(bad());
    }
    // `[::1]:8080`, `host:8080`, `host`.
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => {
            let port = rest[i + 1..].parse::<u16>().map_err(|_| bad())?;
            (&rest[..i], port)
        }
        _ => (rest, 80),
    };
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
    ))
}

/// A short, lowercase description of a connection error (`connection refused`, `timed out`).
pub fn describe_error(e: &io::Error) -> String {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".to_owned(),
        K::TimedOut | K::WouldBlock => "timed out".to_owned(),
        K::ConnectionReset => "connection reset".to_owned(),
        K::UnexpectedEof => "connection closed early".to_owned(),
        _ => e.to_string(),
    }
}

/// [`get`] with a body limit of `limit` bytes.
fn get_limited(
    host: &str,
    port: u16,
    path: &str,
    timeout: Duration,
    limit: usize,
) -> io::Result<Response> {
    let mut req = Request::new(Method::GET, host, port, path, timeout);
    req.limit = limit;
    send_blocking(req)
}

/// Connects to the first address of `host` that answers, each try under `timeout`.
async fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    // `[::1]` as written in a URL is the address `::1`.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let mut last_err = io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address"));
    for addr in within(timeout, tokio::net::lookup_host((bare, port))).await?? {
        match within(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) | Err(e) => last_err = e,
        }
    }
    Err(last_err)
}

/// One request on `stream` and its whole answer.
async fn exchange(stream: TcpStream, req: Request) -> io::Result<Response> {
    let Request {
        method,
        host,
        port,
        path,
        headers,
        body,
        limit,
        ..
    } = req;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(from_hyper)?;
    // The connection task does the reading and writing; it ends when the server closes.
    let conn = tokio::spawn(conn);
    let mut request = hyper::Request::builder()
        .method(method.clone())
        .uri(path.as_str())
        .body(Full::new(body))
        .map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{method} {path}: {e}"))
        })?;
    *request.headers_mut() = headers;
    if !request.headers().contains_key(HOST) {
        let value = HeaderValue::from_str(&host_header(&host, port)).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("host {host:?}: {e}"))
        })?;
        request.headers_mut().insert(HOST, value);
    }
    request
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    let response = sender.send_request(request).await.map_err(from_hyper)?;
    let status: StatusCode = response.status();
    let headers = response.headers().clone();
    // hyper keeps the reason phrase only when it is not the canonical one.
    let reason = match response.extensions().get::<hyper::ext::ReasonPhrase>() {
        Some(r) => String::from_utf8_lossy(r.as_bytes()).into_owned(),
        None => status.canonical_reason().unwrap_or_default().to_owned(),
    };
    let body = Limited::new(response.into_body(), limit)
        .collect()
        .await
        .map_err(|e| from_body(e, limit))?
        .to_bytes();
    conn.abort();
    Ok(Response {
        status: status.as_u16(),
        reason,
        body: String::from_utf8_lossy(&body).into_owned(),
        bytes: body,
        headers,
    })
}

/// The `Host` header for `host`:`port` (an IPv6 address in brackets).
fn host_header(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Runs `fut` under `timeout`; running out is an [`io::ErrorKind::TimedOut`] error.
async fn within<F: std::future::Future>(timeout: Duration, fut: F) -> io::Result<F::Output> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timed out"))
}

/// An I/O error of the kind [`describe_error`] tells apart: the underlying socket error's, a
/// connection closed mid-answer, or a malformed answer.
fn from_hyper(e: hyper::Error) -> io::Error {
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return io::Error::new(io.kind(), e);
        }
        source = s.source();
    }
    let kind = if e.is_timeout() {
        io::ErrorKind::TimedOut
    } else if e.is_incomplete_message() {
        io::ErrorKind::UnexpectedEof
    } else if e.is_parse() || e.is_parse_status() {
        io::ErrorKind::InvalidData
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e)
}

/// An error reading the body: too long, or one of hyper's.
fn from_body(e: Box<dyn std::error::Error + Send + Sync>, limit: usize) -> io::Error {
    if e.is::<http_body_util::LengthLimitError>() {
        return io::Error::new(
            io::ErrorKind::InvalidData,
            format!("response body larger than {limit} bytes"),
        );
    }
    match e.downcast::<hyper::Error>() {
        Ok(e) => from_hyper(*e),
        Err(e) => io::Error::other(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    /// A one-shot server on a free port: reads one request head, writes `answer`, closes.
    /// Joining it gives the request as received.
    fn serve_once(answer: &'static [u8]) -> (u16, JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "request ended early");
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer).unwrap();
            String::from_utf8(req).unwrap()
        });
        (port, server)
    }

    fn get_local(port: u16, path: &str) -> io::Result<Response> {
        get("127.0.0.1", port, path, Duration::from_secs(5))
    }

    #[test]
    fn status_reason_and_chunked_body_are_read() {
        let (port, server) = serve_once(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nrea\r\n2;x=y\r\ndy\r\n0\r\n\r\n",
        );
        let r = get_local(port, "/status").unwrap();
        assert_eq!(
            (r.status, r.reason.as_str(), r.body.as_str()),
            (503, "Service Unavailable", "ready")
        );
        assert_eq!(r.status_text(), "503 Service Unavailable");
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /status HTTP/1.1\r\n"), "{req}");
        let lower = req.to_ascii_lowercase();
        assert!(
            lower.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")),
            "{req}"
        );
        assert!(lower.contains("\r\nconnection: close\r\n"), "{req}");
    }

    #[test]
    fn reason_is_the_one_sent() {
        let (port, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nready");
        let r = get_local(port, "/status").unwrap();
        assert_eq!(
            (r.status_text().as_str(), r.body.as_str()),
            ("200 OK", "ready")
        );
        server.join().unwrap();

        let (port, server) = serve_once(b"HTTP/1.1 200 Fine\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(get_local(port, "/").unwrap().status_text(), "200 Fine");
        server.join().unwrap();

        let (port, server) = serve_once(b"HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n");
        assert_eq!(get_local(port, "/").unwrap().status_text(), "599");
        server.join().unwrap();
    }

    #[test]
    fn body_until_close_is_read() {
        let (port, server) = serve_once(
            b"HTTP/1.0 500 Internal Server Error\r\nServer: x\r\n\r\n{\"error\": \"x\"}",
        );
        let r = get_local(port, "/stats").unwrap();
        assert_eq!(r.status_text(), "500 Internal Server Error");
        assert_eq!(r.body, "{\"error\": \"x\"}");
        server.join().unwrap();
    }

    #[test]
    fn garbage_and_short_answers_are_errors() {
        let (port, server) = serve_once(b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
        let err = get_local(port, "/status").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        server.join().unwrap();

        let (port, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nready");
        let err = get_local(port, "/status").unwrap_err();
        assert_eq!(describe_error(&err), "connection closed early", "{err}");
        server.join().unwrap();
    }

    #[test]
    fn a_body_over_the_limit_is_refused() {
        let (port, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789");
        let err = get_limited("127.0.0.1", port, "/", Duration::from_secs(5), 4).unwrap_err();
        assert!(err.to_string().contains("larger than 4 bytes"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let err = get("127.0.0.1", port, "/status", Duration::from_millis(200)).unwrap_err();
        assert_eq!(describe_error(&err), "timed out", "{err}");
        drop(listener);
    }

    #[test]
    fn refused_connection_is_described() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = get("127.0.0.1", port, "/status", Duration::from_secs(2)).unwrap_err();
        assert_eq!(describe_error(&err), "connection refused");
    }

    #[test]
    fn urls_split_into_host_and_port() {
        assert_eq!(
            split_url("http://10.0.0.1:9000").unwrap(),
            ("10.0.0.1".to_owned(), 9000)
        );
        assert_eq!(split_url("http://reg/").unwrap(), ("reg".to_owned(), 80));
        assert_eq!(
            split_url("http://[::1]:81").unwrap(),
            ("::1".to_owned(), 81)
        );
        for bad in ["https://x", "http://", "http://x/y", "http://x:port"] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_post_carries_its_headers_and_body() {
        let (port, server) =
            serve_once(b"HTTP/1.1 201 Created\r\nX-A: b\r\nContent-Length: 2\r\n\r\nok");
        let mut req = Request::new(
            Method::POST,
            "127.0.0.1",
            port,
            "/p?q=1",
            Duration::from_secs(5),
        );
        req.headers
            .insert("x-amz-date", HeaderValue::from_static("20260101T000000Z"));
        req.body = Bytes::from_static(b"{}");
        let r = send_blocking(req).unwrap();
        assert_eq!((r.status, r.bytes.as_ref()), (201, b"ok".as_ref()));
        assert_eq!(r.headers["x-a"], "b");
        let head = server.join().unwrap().to_ascii_lowercase();
        assert!(head.starts_with("post /p?q=1 http/1.1\r\n"), "{head}");
        assert!(
            head.contains("\r\nx-amz-date: 20260101t000000z\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\ncontent-length: 2\r\n"), "{head}");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(host_header("::1", 8080), "[::1]:8080");
        assert_eq!(host_header("[::1]", 8080), "[::1]:8080");
        assert_eq!(host_header("localhost", 80), "localhost:80");
    }
}
