//! The load agent: HAProxy's agent check connects to `agent_port`, reads one line and closes
//! (`agent-check` in HAProxy's configuration manual). The line is `up N%` with the weight of
//! [`super::Load::weight`], or `drain` while the worker drains or shuts down. Whatever the
//! balancer sends (`agent-send`) is not read. At most [`MAX_OPEN`] connections are served at once;
//! more are closed without an answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::Gauge;

/// Agent connections served at once.
pub const MAX_OPEN: usize = 32;
/// How long writing the answer may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves the agent on `listener` until `stop` changes. While the worker shuts down the
/// listener stays open (answering `drain`) until the process ends or `stop` is dropped.
pub async fn serve(listener: TcpListener, gauge: Arc<Gauge>, mut stop: watch::Receiver<bool>) {
    let open = Arc::new(Semaphore::new(MAX_OPEN));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (mut stream, peer): (_, SocketAddr) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "agent: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
                    continue;
                };
                let reply = gauge.load().agent_reply(gauge.draining());
                tokio::spawn(async move {
                    let write = async {
                        stream.write_all(reply.as_bytes()).await?;
                        stream.shutdown().await
                    };
                    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "agent: write failed"),
                        Err(_) => tracing::debug!(%peer, "agent: write timed out"),
                    }
                    drop(permit);
                });
            }
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
}
