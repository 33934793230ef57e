//! Shutdown: stop taking calls, destroy idle sandboxes, wait for destroys under way, then end
//! what outlived the deadline.

use std::sync::Arc;
use std::time::Duration;

use crate::manager::backend::Backend;
use crate::manager::Manager;

impl<B: Backend> Manager<B> {
    /// Steps, in order: refuse new and waiting calls (the gates and the capacity close);
    /// destroy every idle sandbox; close the backend's shared state (zygotes end with their
    /// last sandbox); wait up to `deadline` for destroys under way; kill the sandboxes whose
    /// calls are still running (their callers get 502) so that the zygotes they hold end within
    /// this deadline, not after another; wait up to `deadline` for the zygotes to end; write, flush and close the
    /// function logs (what every sandbox wrote is in the writer's hands once it is destroyed).
    pub async fn shutdown(self: &Arc<Self>, deadline: Duration) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.capacity.close();
        for (_, pool) in self.pools.all() {
            pool.gate.close();
            drop(pool.drain());
        }
        self.backend.close();
        if !self.live.destroys_done_within(deadline).await {
            tracing::warn!("some sandboxes were still being destroyed at the shutdown deadline");
        }
        let busy = self.live.cgroups();
        if !busy.is_empty() {
            tracing::warn!(
                sandboxes = busy.len(),
                "ending sandboxes whose calls outlived the shutdown deadline"
            );
            let this = Arc::clone(self);
            let killed = tokio::task::spawn_blocking(move || {
                for cgroup in &busy {
                    this.backend.kill(cgroup);
                }
            });
            if let Err(e) = killed.await {
                tracing::warn!(error = %e, "the shutdown's kill task failed");
            }
        }
        let zygotes = async {
            while self.backend.shared_alive() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(deadline, zygotes).await.is_err() {
            tracing::warn!("some zygotes were still alive at the shutdown deadline");
        }
        let logs = Arc::clone(&self.logs);
        // Written, flushed and closed: nothing is logged after the sandboxes are gone.
        let flushed = tokio::task::spawn_blocking(move || logs.close_blocking(deadline)).await;
        if !matches!(flushed, Ok(true)) {
            tracing::warn!("the function logs were not all written at the shutdown deadline");
        }
    }
}
