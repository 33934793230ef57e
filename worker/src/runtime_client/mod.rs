//! The worker's side of the call protocol spoken with the in-sandbox runtime over `server_pipe`
//! (`cluster-template/runtime/runtime.py` documents the format): one request frame per call,
//! the call's request id and deadline ahead of its event, written at once; one reply frame,
//! preceded once per sandbox (before its first answer) by an init report frame that says how
//! long the runtime took to load the entry.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod wire_tests;

/// The version of the call protocol the worker speaks; the base's `runtime.py` must declare
/// the same in a `CALL_PROTOCOL = <n>` line.
pub const CALL_PROTOCOL: u8 = 4;
/// Largest response accepted from a sandbox.
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;
/// A request's fixed header: the protocol byte, the deadline, the request id's length.
const HEADER: usize = 10;
/// The reply kind of the init report: 8 bytes, big-endian nanoseconds.
pub const INIT_REPORT: u8 = 3;

/// The id of one call: a random (version 4) UUID made by the worker, or the id the caller gave
/// (`X-Amz-Request-Id` / `X-Request-Id`, checked by [`RequestId::given`]). The function sees it
/// as `context.aws_request_id`, the client in the `x-amzn-RequestId`, `X-Amz-Request-Id` and
/// `X-Request-Id` headers of the answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Id);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Id {
    Made(uuid::Uuid),
    Given(Box<str>),
}

/// Longest request id a caller may give.
pub const MAX_REQUEST_ID: usize = 128;

/// Why a caller's request id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request id {shown:?} is not 1 to {MAX_REQUEST_ID} characters of A-Z a-z 0-9 - _ . :")]
pub struct InvalidRequestId {
    /// The start of what was given.
    pub shown: String,
}

impl RequestId {
    /// A new id (no system call: a thread-local generator, seeded once).
    pub fn new() -> Self {
        Self(Id::Made(uuid::Uuid::new_v4()))
    }

    /// The id a caller gave: 1 to [`MAX_REQUEST_ID`] characters of `A-Z a-z 0-9 - _ . :`
    /// (what fits a log line and a header unchanged).
    pub fn given(raw: &str) -> Result<Self, InvalidRequestId> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_REQUEST_ID
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if ok {
            Ok(Self(Id::Given(raw.into())))
        } else {
            Err(InvalidRequestId {
                shown: raw.chars().take(MAX_REQUEST_ID + 8).collect(),
            })
        }
    }

    /// Writes the id's ASCII bytes to `out` (no allocation for a made id).
    fn write_to(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Id::Made(uuid) => {
                let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
                out.extend_from_slice(uuid.hyphenated().encode_lower(&mut buf).as_bytes());
            }
            Id::Given(s) => out.extend_from_slice(s.as_bytes()),
        }
    }

    fn len(&self) -> usize {
        match &self.0 {
            Id::Made(_) => uuid::fmt::Hyphenated::LENGTH,
            Id::Given(s) => s.len(),
        }
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Id::Made(uuid) => uuid.hyphenated().fmt(f),
            Id::Given(s) => f.write_str(s),
        }
    }
}

/// When a call must have answered, on `CLOCK_MONOTONIC`: the clock the sandbox's runtime reads
/// too (sandboxes have no time namespace), so `context.get_remaining_time_in_millis()` counts
/// down to the worker's own timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline {
    monotonic_ns: u64,
}

impl Deadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        let timeout = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        Self {
            monotonic_ns: monotonic_ns().saturating_add(timeout),
        }
    }

    /// The deadline in `CLOCK_MONOTONIC` nanoseconds.
    pub fn monotonic_ns(self) -> u64 {
        self.monotonic_ns
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (through the vDSO: no system call). The clock cannot
/// fail on Linux; if it did, 0 makes every deadline already past for the function, never later
/// than the worker's own timeout.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec() as u64)
    })
}

/// What a request carries besides its event.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub request_id: &'a RequestId,
    pub deadline: Deadline,
}

/// What the runtime answered.
#[derive(Debug)]
pub enum Reply {
    /// The entry's return value, JSON-encoded.
    Ok(Bytes),
    /// The entry or its module raised, or it cannot be called: JSON `{"type", "message",
    /// "traceback"}`.
    HandlerError(Bytes),
    /// The runtime rejected the request: JSON `{"type", "message"}`.
    RequestError(Bytes),
}

/// Transport failures: the sandbox died or broke the protocol.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection to the sandbox failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the sandbox closed the connection")]
    Closed,
    #[error("the sandbox sent an unknown reply kind {0}")]
    BadKind(u8),
    #[error("the sandbox sent a {0}-byte init report (8 bytes expected)")]
    BadInitReport(usize),
    #[error("the sandbox sent a {0}-byte reply, more than the {MAX_RESPONSE}-byte limit")]
    TooLarge(usize),
    #[error("a {0}-byte event does not fit in a request frame")]
    EventTooLarge(usize),
}

/// One request frame, length prefix included: what [`call`] writes.
pub fn encode_request(call: &Call<'_>, event: &[u8]) -> Result<Vec<u8>, WireError> {
    let id_len = call.request_id.len();
    let len = HEADER + id_len + event.len();
    let prefix = u32::try_from(len).map_err(|_| WireError::EventTooLarge(event.len()))?;
    let mut frame = Vec::with_capacity(4 + len);
    frame.extend_from_slice(&prefix.to_be_bytes());
    frame.push(CALL_PROTOCOL);
    frame.extend_from_slice(&call.deadline.monotonic_ns.to_be_bytes());
    // At most MAX_REQUEST_ID (128) bytes: the length fits the byte.
    frame.push(id_len as u8);
    call.request_id.write_to(&mut frame);
    frame.extend_from_slice(event);
    Ok(frame)
}

/// A request frame as the runtime reads it (after its length prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub deadline_ns: u64,
    pub request_id: &'a str,
    pub event: &'a [u8],
}

/// Reads a request frame the way `runtime.py` does; `None` if it is not one of
/// [`CALL_PROTOCOL`]. What the fake sandboxes of the manager's tests use.
pub fn decode_request(frame: &[u8]) -> Option<Request<'_>> {
    if frame.len() < HEADER || frame[0] != CALL_PROTOCOL {
        return None;
    }
    let deadline_ns = u64::from_be_bytes(frame[1..9].try_into().ok()?);
    let start = HEADER + usize::from(frame[9]);
    let request_id = std::str::from_utf8(frame.get(HEADER..start)?).ok()?;
    Some(Request {
        deadline_ns,
        request_id,
        event: &frame[start..],
    })
}

/// Sends one call (one write) and reads one reply; an init report ahead of it is read and
/// ignored.
pub async fn call(
    conn: &mut UnixStream,
    call: &Call<'_>,
    event: &[u8],
) -> Result<Reply, WireError> {
    let mut init = None;
    call_reporting(conn, call, event, &mut init).await
}

/// [`call`], setting `init` to the load time an init report ahead of the answer carries (the
/// runtime sends one, before its first answer). `init` is set as soon as the report is read,
/// so a call that times out after it still has it.
pub async fn call_reporting(
    conn: &mut UnixStream,
    call: &Call<'_>,
    event: &[u8],
    init: &mut Option<Duration>,
) -> Result<Reply, WireError> {
    let frame = encode_request(call, event)?;
    conn.write_all(&frame).await?;
    let mut header = [0u8; 5];
    let size = loop {
        read_exact(conn, &mut header).await?;
        let size = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if header[0] != INIT_REPORT {
            break size;
        }
        if size != 8 {
            return Err(WireError::BadInitReport(size));
        }
        let mut ns = [0u8; 8];
        read_exact(conn, &mut ns).await?;
        *init = Some(Duration::from_nanos(u64::from_be_bytes(ns)));
    };
    if size > MAX_RESPONSE {
        return Err(WireError::TooLarge(size));
    }
    let mut payload = vec![0u8; size];
    read_exact(conn, &mut payload).await?;
    let payload = Bytes::from(payload);
    match header[0] {
        0 => Ok(Reply::Ok(payload)),
        1 => Ok(Reply::HandlerError(payload)),
        2 => Ok(Reply::RequestError(payload)),
        k => Err(WireError::BadKind(k)),
    }
}

/// Probes a sandbox's runtime: an empty request, answered with the init report alone once the
/// entry is loaded (its module's init run). Returns how long the load took. No call is made.
pub async fn probe(conn: &mut UnixStream) -> Result<Duration, WireError> {
    conn.write_all(&[0, 0, 0, 0]).await?;
    let mut header = [0u8; 5];
    read_exact(conn, &mut header).await?;
    let size = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if header[0] != INIT_REPORT {
        return Err(WireError::BadKind(header[0]));
    }
    if size != 8 {
        return Err(WireError::BadInitReport(size));
    }
    let mut ns = [0u8; 8];
    read_exact(conn, &mut ns).await?;
    Ok(Duration::from_nanos(u64::from_be_bytes(ns)))
}

/// Fills `buf` from `conn`; the end of the connection is [`WireError::Closed`].
async fn read_exact(conn: &mut UnixStream, buf: &mut [u8]) -> Result<(), WireError> {
    match conn.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(WireError::Closed),
        Err(e) => Err(e.into()),
    }
}

/// The call protocol a `runtime.py` declares in its `CALL_PROTOCOL = <n>` line, if any.
pub fn declared_protocol(source: &str) -> Option<u8> {
    source.lines().find_map(|line| {
        let value = line.strip_prefix("CALL_PROTOCOL")?.trim_start();
        value.strip_prefix('=')?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_frame_carries_its_id_and_deadline_before_the_event() {
        let id = RequestId::new();
        let deadline = Deadline::after(Duration::from_secs(3));
        let frame = encode_request(
            &Call {
                request_id: &id,
                deadline,
            },
            br#"{"a": 1}"#,
        )
        .unwrap();
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        let req = decode_request(&frame[4..]).unwrap();
        assert_eq!(req.request_id, id.to_string());
        assert_eq!(req.request_id.len(), 36);
        assert_eq!(req.deadline_ns, deadline.monotonic_ns());
        assert_eq!(req.event, br#"{"a": 1}"#);
        let left = req.deadline_ns - monotonic_ns();
        assert!(left > 2_000_000_000 && left <= 3_000_000_000, "{left}");
        // Another protocol, a cut header, an id past the end: not a request.
        let mut other = frame[4..].to_vec();
        other[0] = CALL_PROTOCOL + 1;
        assert_eq!(decode_request(&other), None);
        assert_eq!(decode_request(&frame[4..12]), None);
        assert_eq!(decode_request(&frame[4..30]), None);
    }

    #[test]
    fn request_ids_are_distinct_uuids() {
        let ids: std::collections::BTreeSet<String> =
            (0..1000).map(|_| RequestId::new().to_string()).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(3) {
            let parsed = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version_num(), 4, "{id}");
        }
    }

    #[test]
    fn the_declared_protocol_is_read_from_its_line() {
        assert_eq!(declared_protocol("x = 1\nCALL_PROTOCOL = 2\n"), Some(2));
        assert_eq!(declared_protocol("CALL_PROTOCOL = 3\n"), Some(3));
        assert_eq!(declared_protocol("CALL_PROTOCOL=3"), Some(3));
        assert_eq!(declared_protocol("# CALL_PROTOCOL = 2\n"), None);
        assert_eq!(
            declared_protocol(include_str!("../../../cluster-template/runtime/runtime.py")),
            Some(CALL_PROTOCOL),
            "cluster-template/runtime/runtime.py speaks another call protocol"
        );
    }
}
