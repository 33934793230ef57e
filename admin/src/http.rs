//! A blocking HTTP/1.1 `GET` for talking to local workers (`/status`, `/stats`): hyper's client
//! over one TCP connection per request, driven by a current-thread tokio runtime because
//! `admin` is synchronous. The body is read up to [`MAX_RESPONSE`] bytes.

use std::io;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
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
    pub body: String,
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

/// `GET http://<host>:<port><path>`, with `timeout` for connecting and again for the answer.
pub fn get(host: &str, port: u16, path: &str, timeout: Duration) -> io::Result<Response> {
    get_limited(host, port, path, timeout, MAX_RESPONSE)
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let stream = connect(host, port, timeout).await?;
        within(timeout, exchange(stream, host, port, path, limit)).await?
    })
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
async fn exchange(
    stream: TcpStream,
    host: &str,
    port: u16,
    path: &str,
    limit: usize,
) -> io::Result<Response> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(from_hyper)?;
    // The connection task does the reading and writing; it ends when the server closes.
    let conn = tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header(HOST, host_header(host, port))
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("GET {path}: {e}")))?;
    let response = sender.send_request(request).await.map_err(from_hyper)?;
    let status = response.status();
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
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(host_header("::1", 8080), "[::1]:8080");
        assert_eq!(host_header("[::1]", 8080), "[::1]:8080");
        assert_eq!(host_header("localhost", 80), "localhost:80");
    }
}
