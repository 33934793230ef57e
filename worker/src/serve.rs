//! Serving HTTP/1.1: the accept loop shared by the worker and the registry server, with at
//! most `max_connections` connections at once (one more gets a 503 answer and is closed) and a
//! graceful drain at shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::error::ApiError;
use crate::manager::Unavailable;

/// Connections beyond `max_connections` that may be answered (503) at once; more are closed
/// without an answer.
const MAX_REFUSALS: usize = 64;
/// How long a refused connection may take to send its request and read the answer.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The accept loop's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Seconds open connections get to finish at shutdown.
    pub drain_s: u64,
    pub max_connections: usize,
}

/// Serves HTTP/1.1 connections from `listener` with `handler` (given each request and its
/// peer) until `stop` changes, then lets open connections finish for `drain_s` seconds.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    handler: F,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
) where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = http1::Builder::new();
    // With a timer, hyper enforces its header_read_timeout (30 s): a client that sends a
    // request head slowly, or never, cannot hold a connection open.
    http.timer(hyper_util::rt::TokioTimer::new());
    // Each connection holds a permit while it is open (as mini-redis bounds its connections).
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
                    refuse(stream, peer, limits.max_connections, &refusals);
                    continue;
                };
                let handler = handler.clone();
                let svc = service_fn(move |req| handler(req, peer));
                let conn = http.serve_connection(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    drop(permit);
                });
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let drain_s = limits.drain_s;
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(Duration::from_secs(drain_s.max(1))) => {
            tracing::warn!(deadline_s = drain_s, "in-flight requests did not finish before the deadline");
        }
    }
}

/// A connection beyond `max_connections`: one 503 answer, then closed (within
/// [`REFUSAL_TIMEOUT`]); beyond [`MAX_REFUSALS`] being answered, closed at once.
fn refuse(stream: TcpStream, peer: SocketAddr, max_connections: usize, refusals: &Arc<Semaphore>) {
    let Ok(permit) = Arc::clone(refusals).try_acquire_owned() else {
        tracing::warn!(%peer, max_connections, "too many connections; closing one without an answer");
        return;
    };
    tracing::warn!(%peer, max_connections, "too many connections; answering 503");
    tokio::spawn(async move {
        let svc = service_fn(move |_req| async move {
            let err = ApiError::Unavailable {
                reason: Unavailable::TooManyConnections { max_connections },
            };
            let mut resp = err.into_response();
            resp.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            Ok::<_, std::convert::Infallible>(resp)
        });
        let mut http = http1::Builder::new();
        http.keep_alive(false);
        let conn = http.serve_connection(TokioIo::new(stream), svc);
        if tokio::time::timeout(REFUSAL_TIMEOUT, conn).await.is_err() {
            tracing::debug!(%peer, "a refused connection did not finish in time");
        }
        drop(permit);
    });
}
