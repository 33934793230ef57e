//! The worker's side of the wire protocol spoken with the in-sandbox runtime over `server_pipe`
//! (see `cluster-template/runtime/runtime.py` for the format).

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Largest response accepted from a sandbox.
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// What the runtime answered.
#[derive(Debug)]
pub enum Reply {
    /// The handler's return value, JSON-encoded.
    Ok(Bytes),
    /// The handler or its module raised: JSON `{"type", "message", "traceback"}`.
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
    #[error("the sandbox sent a {0}-byte reply, more than the {MAX_RESPONSE}-byte limit")]
    TooLarge(usize),
}

/// Sends one event and reads one reply.
pub async fn call(conn: &mut UnixStream, event: &[u8]) -> Result<Reply, WireError> {
    let len = u32::try_from(event.len()).map_err(|_| WireError::TooLarge(event.len()))?;
    let mut frame = Vec::with_capacity(4 + event.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(event);
    conn.write_all(&frame).await?;
    let mut header = [0u8; 5];
    match conn.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let size = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if size > MAX_RESPONSE {
        return Err(WireError::TooLarge(size));
    }
    let mut payload = vec![0u8; size];
    match conn.read_exact(&mut payload).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let payload = Bytes::from(payload);
    match header[0] {
        0 => Ok(Reply::Ok(payload)),
        1 => Ok(Reply::HandlerError(payload)),
        2 => Ok(Reply::RequestError(payload)),
        k => Err(WireError::BadKind(k)),
    }
}
