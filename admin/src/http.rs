//! A minimal blocking HTTP/1.1 client (one `GET` per connection) for talking to local workers:
//! `/status` and `/stats`. Enough for a worker's answers; not a general client.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest response accepted, in bytes.
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The reason phrase of the status line (`OK`), possibly empty.
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

/// `GET http://<host>:<port><path>` with `timeout` for connecting and for each read and write.
pub fn get(host: &str, port: u16, path: &str, timeout: Duration) -> std::io::Result<Response> {
    let mut last_err =
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host}: no address"));
    let mut stream = None;
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = e,
        }
    }
    let mut stream = stream.ok_or(last_err)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write, so the request goes out as one segment.
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    if let Err(e) = stream.take(MAX_RESPONSE).read_to_end(&mut raw) {
        // A peer may reset the connection right after a complete answer: keep the answer.
        if raw.is_empty() || parse_response(&raw).is_err() {
            return Err(e);
        }
    }
    parse_response(&raw).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// A short, lowercase description of a connection error (`connection refused`, `timed out`).
pub fn describe_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".to_owned(),
        K::TimedOut | K::WouldBlock => "timed out".to_owned(),
        K::ConnectionReset => "connection reset".to_owned(),
        K::UnexpectedEof => "connection closed early".to_owned(),
        _ => e.to_string(),
    }
}

/// Parses a complete HTTP/1.x response (status line, headers, body by `Content-Length`, chunked,
/// or up to the end of the connection).
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let header_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| "incomplete response headers".to_owned())?;
    let head = std::str::from_utf8(&raw[..header_end])
        .map_err(|_| "response headers are not UTF-8".to_owned())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let (status, reason) = parse_status_line(status_line)?;
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("malformed header line {line:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let rest = &raw[header_end + 4..];
    let body = if chunked {
        decode_chunked(rest)?
    } else if let Some(n) = content_length {
        rest.get(..n)
            .ok_or_else(|| format!("body shorter than Content-Length {n}"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        reason,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Parses `HTTP/1.1 200 OK` into `(200, "OK")`.
pub fn parse_status_line(line: &str) -> Result<(u16, String), String> {
    let bad = || format!("malformed status line {line:?}");
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/") {
        return Err(bad());
    }
    let code = parts.next().unwrap_or_default();
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let status = code.parse().map_err(|_| bad())?;
    Ok((status, parts.next().unwrap_or_default().trim().to_owned()))
}

fn decode_chunked(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| "truncated chunk size".to_owned())?;
        let size_text =
            std::str::from_utf8(&data[..line_end]).map_err(|_| "bad chunk size".to_owned())?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = data
            .get(..size)
            .ok_or_else(|| "truncated chunk".to_owned())?;
        body.extend_from_slice(chunk);
        data = data
            .get(size + 2..)
            .ok_or_else(|| "truncated chunk".to_owned())?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status_line("HTTP/1.1 200 OK").unwrap(),
            (200, "OK".to_owned())
        );
        assert_eq!(
            parse_status_line("HTTP/1.1 503 Service Unavailable").unwrap(),
            (503, "Service Unavailable".to_owned())
        );
        assert_eq!(
            parse_status_line("HTTP/1.0 404").unwrap(),
            (404, String::new())
        );
        for bad in [
            "",
            "HTTP/1.1",
            "HTTP/1.1 20 OK",
            "HTTP/1.1 abc OK",
            "SSH-2.0-OpenSSH",
            "200 OK",
        ] {
            assert!(parse_status_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn response_with_content_length() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nready";
        let r = parse_response(raw).unwrap();
        assert_eq!(
            (r.status, r.reason.as_str(), r.body.as_str()),
            (200, "OK", "ready")
        );
        assert_eq!(r.status_text(), "200 OK");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nready").is_err());
    }

    #[test]
    fn response_chunked_and_until_close() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nrea\r\n2;x=y\r\ndy\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap().body, "ready");
        let raw = b"HTTP/1.0 500 Internal Server Error\r\nServer: x\r\n\r\n{\"error\": \"x\"}";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status_text(), "500 Internal Server Error");
        assert_eq!(r.body, "{\"error\": \"x\"}");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_response(b"").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n").is_err());
    }

    #[test]
    fn get_talks_to_a_local_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
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
            let req = String::from_utf8(req).unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nready")
                .unwrap();
            req
        });
        let r = get("127.0.0.1", port, "/status", Duration::from_secs(5)).unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "ready"));
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /status HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Connection: close"), "{req}");
    }

    #[test]
    fn refused_connection_is_described() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = get("127.0.0.1", port, "/status", Duration::from_secs(2)).unwrap_err();
        assert_eq!(describe_error(&err), "connection refused");
    }
}
