//! GPU sandboxes: at most `gpu_sandboxes` alive at once in the worker (a GPU's memory is not
//! a cgroup's to limit). A cold start of a GPU function takes a slot: a free one, or one freed
//! by ending the least recently used idle GPU sandbox that is not provisioned, or by waiting
//! for one (up to `timeout_s`, then 503). The slot is given back once the sandbox's processes
//! are killed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, TryAcquireError};

use crate::manager::backend::Backend;
use crate::manager::error::{RunError, Unavailable};
use crate::manager::Manager;

impl<B: Backend> Manager<B> {
    /// A GPU slot for a cold start (see the module docs).
    pub(crate) async fn acquire_gpu(self: &Arc<Self>) -> Result<OwnedSemaphorePermit, RunError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.cfg.timeout_s);
        loop {
            let returned = self.live.idle_returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            match Arc::clone(&self.gpu_slots).try_acquire_owned() {
                Ok(p) => return Ok(p),
                Err(TryAcquireError::Closed) => return Err(RunError::shutting_down()),
                Err(TryAcquireError::NoPermits) => {}
            }
            if let Some(victim) = self.pools.evict_lru_gpu() {
                Self::count(&self.counters.evictions);
                tracing::debug!(
                    sandbox = victim.id,
                    "ending an idle GPU sandbox for a GPU cold start"
                );
                drop(victim);
            }
            tokio::select! {
                permit = Arc::clone(&self.gpu_slots).acquire_owned() => {
                    return permit.map_err(|_| RunError::shutting_down());
                }
                () = &mut returned => continue,
                () = tokio::time::sleep_until(deadline) => {
                    return Err(RunError::Unavailable {
                        reason: Unavailable::GpuBusy {
                            gpu_sandboxes: self.cfg.gpu_sandboxes,
                        },
                    });
                }
            }
        }
    }
}
