//! Live sandboxes: the table `/stats` shows, and [`Instance`], a sandbox the manager holds with
//! its connection and its output's capture. Dropping an instance logs what its sandbox wrote
//! and nobody read yet, then destroys the sandbox on the blocking pool; its capacity permit is
//! released once its processes have been sent `SIGKILL`, before the teardown.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::Serialize;
use tokio::net::UnixStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};

use crate::logs::Capture;
use crate::manager::backend::SandboxHandle;
use crate::registry::HandlerVersion;

/// Where a sandbox is in the manager's hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxState {
    /// Started, its first call not yet sent.
    Starting,
    /// Serving a call.
    Busy,
    /// In its lambda's pool, waiting for a call.
    Idle,
    /// In its pool, frozen (cgroup freezer).
    Paused,
}

/// One entry of the live-sandbox table shown by `/stats` and `admin status`.
#[derive(Debug, Clone, Serialize)]
pub struct LiveInfo {
    pub lambda: String,
    pub id: u64,
    pub state: SandboxState,
    pub pid: i32,
    pub uptime_s: f64,
    pub calls: u64,
    /// Kept by its function's provisioned concurrency (else started on demand).
    pub provisioned: bool,
    #[serde(skip)]
    pub(crate) created: Instant,
    /// The sandbox's cgroup, relative to each hierarchy's root.
    pub cgroup: PathBuf,
}

/// Every live sandbox of the worker (at most `handler_cache_size`: each holds a capacity
/// permit), and the destroys under way.
#[derive(Debug, Default)]
pub(crate) struct Live {
    table: DashMap<u64, LiveInfo>,
    destroying: AtomicUsize,
    destroyed: Notify,
    /// Notified when a sandbox goes back to its pool (an eviction candidate for a waiting
    /// cold start).
    pub(crate) idle_returned: Notify,
}

impl Live {
    pub(crate) fn insert(&self, info: LiveInfo) {
        self.table.insert(info.id, info);
    }

    pub(crate) fn set_state(&self, id: u64, state: SandboxState, calls_delta: u64) {
        if let Some(mut info) = self.table.get_mut(&id) {
            info.state = state;
            info.calls += calls_delta;
        }
    }

    pub(crate) fn set_provisioned(&self, id: u64, provisioned: bool) {
        if let Some(mut info) = self.table.get_mut(&id) {
            info.provisioned = provisioned;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// The cgroups of all live sandboxes (copied out: no map lock is held while they are used).
    pub(crate) fn cgroups(&self) -> Vec<PathBuf> {
        self.table
            .iter()
            .map(|e| e.value().cgroup.clone())
            .collect()
    }

    /// The table ordered by id, with uptimes as of now.
    pub(crate) fn snapshot(&self) -> Vec<LiveInfo> {
        let mut v: Vec<LiveInfo> = self
            .table
            .iter()
            .map(|e| {
                let mut info = e.value().clone();
                info.uptime_s = (info.created.elapsed().as_secs_f64() * 10.0).round() / 10.0;
                info
            })
            .collect();
        v.sort_by_key(|i| i.id);
        v
    }

    /// Live sandboxes per lambda.
    pub(crate) fn count_by_lambda(&self) -> std::collections::HashMap<String, usize> {
        let mut live = std::collections::HashMap::new();
        for e in self.table.iter() {
            *live.entry(e.value().lambda.clone()).or_default() += 1;
        }
        live
    }

    /// Destroys `sandbox` on the blocking pool (here, when there is no runtime): kills its
    /// processes, forgets it and releases `permit` (a killed sandbox runs nothing more, so a
    /// cold start may take its place while it is torn down), then waits for them and removes
    /// the rest (counted in [`Live::destroying`] until done).
    pub(crate) fn destroy<S: SandboxHandle>(
        self: &Arc<Self>,
        mut sandbox: S,
        id: u64,
        permit: Option<OwnedSemaphorePermit>,
        gpu: Option<OwnedSemaphorePermit>,
    ) {
        let live = Arc::clone(self);
        live.destroying.fetch_add(1, Ordering::SeqCst);
        let work = move || {
            sandbox.kill();
            live.table.remove(&id);
            drop((permit, gpu));
            sandbox.destroy();
            live.destroying.fetch_sub(1, Ordering::SeqCst);
            live.destroyed.notify_waiters();
            tracing::debug!(sandbox = id, "sandbox destroyed");
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(work);
            }
            Err(_) => work(),
        }
    }

    /// Destroys under way.
    pub(crate) fn destroying(&self) -> usize {
        self.destroying.load(Ordering::SeqCst)
    }

    /// Waits until no destroy is under way, or until `deadline`; whether none is.
    pub(crate) async fn destroys_done(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let destroyed = self.destroyed.notified();
            tokio::pin!(destroyed);
            destroyed.as_mut().enable();
            if self.destroying() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, destroyed).await.is_err() {
                return self.destroying() == 0;
            }
        }
    }

    /// [`Live::destroys_done`] within `limit` from now.
    pub(crate) async fn destroys_done_within(&self, limit: Duration) -> bool {
        self.destroys_done(tokio::time::Instant::now() + limit)
            .await
    }
}

/// A sandbox the manager holds, with its connection (see the module docs).
pub(crate) struct Instance<S: SandboxHandle> {
    pub(crate) id: u64,
    pub(crate) version: HandlerVersion,
    sandbox: Option<S>,
    pub(crate) conn: UnixStream,
    /// Its stdout and stderr, for the function's log.
    pub(crate) capture: Capture,
    pub(crate) last_used: Instant,
    pub(crate) paused: bool,
    /// Its place among its function's provisioned sandboxes, when it is one.
    pub(crate) provisioned: Option<crate::manager::provision::ProvisionSlot>,
    permit: Option<OwnedSemaphorePermit>,
    /// A GPU sandbox's slot among `gpu_sandboxes`.
    pub(crate) gpu_slot: Option<OwnedSemaphorePermit>,
    live: Arc<Live>,
}

impl<S: SandboxHandle> std::fmt::Debug for Instance<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("id", &self.id)
            .field("paused", &self.paused)
            .finish_non_exhaustive()
    }
}

impl<S: SandboxHandle> Instance<S> {
    pub(crate) fn new(
        id: u64,
        version: HandlerVersion,
        sandbox: S,
        conn: UnixStream,
        capture: Capture,
        permit: OwnedSemaphorePermit,
        live: Arc<Live>,
    ) -> Self {
        Self {
            id,
            version,
            sandbox: Some(sandbox),
            conn,
            capture,
            last_used: Instant::now(),
            paused: false,
            provisioned: None,
            permit: Some(permit),
            gpu_slot: None,
            live,
        }
    }

    /// The sandbox (present until the instance is dropped).
    pub(crate) fn sandbox(&self) -> Option<&S> {
        self.sandbox.as_ref()
    }

    pub(crate) fn is_alive(&mut self) -> bool {
        self.sandbox.as_mut().is_some_and(S::is_alive)
    }

    /// Freezes (`true`) or thaws (`false`) the sandbox and records it. Blocking.
    pub(crate) fn set_paused(&mut self, paused: bool) -> Result<(), sandbox::SandboxError> {
        if let Some(sb) = self.sandbox.as_mut() {
            sb.set_paused(paused)?;
        }
        self.paused = paused;
        Ok(())
    }

    pub(crate) fn set_state(&self, state: SandboxState, calls_delta: u64) {
        self.live.set_state(self.id, state, calls_delta);
    }

    /// Makes it a provisioned sandbox (with its slot) or, with `None`, an on-demand one.
    pub(crate) fn set_provisioned(
        &mut self,
        slot: Option<crate::manager::provision::ProvisionSlot>,
    ) {
        self.live.set_provisioned(self.id, slot.is_some());
        self.provisioned = slot;
    }
}

impl<S: SandboxHandle> Drop for Instance<S> {
    fn drop(&mut self) {
        if let Some(sandbox) = self.sandbox.take() {
            self.live
                .destroy(sandbox, self.id, self.permit.take(), self.gpu_slot.take());
        }
    }
}
