//! Provisioned concurrency: sandboxes kept started and initialized for a function at all
//! times (`"provisioned_concurrency": N`, `docs/provisioned.md`).
//!
//! A pass of the provisioner ([`Manager::provision`], every second from the worker's start):
//! 1. list the registry's functions (at most [`MAX_SCANNED`]) and look each up (remembered
//!    until the registry changes, so a pass over unchanged functions reads no file);
//! 2. for each with provisioned concurrency, or whose pool still has provisioned sandboxes:
//!    the pool's count for the function's current version, with its target;
//! 3. start the missing ones (each a cold start under the capacity rules, then a probe: the
//!    runtime answers once the entry is imported and the module's init has run), each put in
//!    the pool as a provisioned idle sandbox; a start that fails is retried after a backoff
//!    (1 s doubling to 60 s);
//! 4. once the current version has all its provisioned sandboxes ready, retire the older
//!    versions' (until then calls of the new version are served by them: a code update never
//!    makes a call wait for a cold start), and demote those beyond a lowered target to
//!    on-demand sandboxes.
//!
//! A provisioned sandbox is never paused, reaped for idleness or evicted for capacity or
//! memory; it holds its capacity permit like any other, so it counts in the memory budget.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::manager::backend::{Backend, LambdaRef};
use crate::manager::error::RunError;
use crate::manager::instance::SandboxState;
use crate::manager::pool::PoolUse;
use crate::manager::Manager;
use crate::name::LambdaName;
use crate::registry::HandlerVersion;

/// Most registry entries one pass looks at.
pub(crate) const MAX_SCANNED: usize = 4096;
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Why a provisioned sandbox did not start.
#[derive(Debug, thiserror::Error)]
enum ProvisionError {
    #[error(transparent)]
    Start(#[from] RunError),
    #[error("its runtime did not report ready: {0}")]
    Probe(String),
}

/// The provisioned sandboxes of one version of a function: how many there should be, how
/// many are held (started or starting), how many are ready.
#[derive(Debug)]
pub(crate) struct ProvisionCount {
    pub(crate) version: HandlerVersion,
    target: AtomicUsize,
    live: AtomicUsize,
    ready: AtomicUsize,
    failures: AtomicU32,
    retry_at: Mutex<Option<Instant>>,
}

impl ProvisionCount {
    pub(crate) fn new(version: HandlerVersion, target: usize) -> Self {
        Self {
            version,
            target: AtomicUsize::new(target),
            live: AtomicUsize::new(0),
            ready: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            retry_at: Mutex::new(None),
        }
    }

    pub(crate) fn target(&self) -> usize {
        self.target.load(Ordering::SeqCst)
    }

    pub(crate) fn set_target(&self, n: usize) {
        self.target.store(n, Ordering::SeqCst);
    }

    pub(crate) fn ready(&self) -> usize {
        self.ready.load(Ordering::SeqCst)
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Whether every sandbox the target asks for is ready.
    pub(crate) fn complete(&self) -> bool {
        self.ready() >= self.target()
    }

    fn may_try(&self, now: Instant) -> bool {
        let at = self.retry_at.lock().unwrap_or_else(|p| p.into_inner());
        at.is_none_or(|t| now >= t)
    }

    fn failed(&self, now: Instant) -> Duration {
        let n = self.failures.fetch_add(1, Ordering::SeqCst).min(6);
        let wait = Duration::from_secs(1 << n).min(MAX_BACKOFF);
        *self.retry_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(now + wait);
        wait
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::SeqCst);
        *self.retry_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// A provisioned sandbox's place in its version's count: held from the start of the sandbox
/// to its end (dropped with its instance).
#[derive(Debug)]
pub(crate) struct ProvisionSlot {
    count: Arc<ProvisionCount>,
    ready: bool,
}

impl ProvisionSlot {
    pub(crate) fn new(count: &Arc<ProvisionCount>) -> Self {
        count.live.fetch_add(1, Ordering::SeqCst);
        Self {
            count: Arc::clone(count),
            ready: false,
        }
    }

    fn mark_ready(&mut self) {
        if !self.ready {
            self.ready = true;
            self.count.ready.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Whether this slot counts for `count` (the same version's).
    pub(crate) fn of(&self, count: &Arc<ProvisionCount>) -> bool {
        Arc::ptr_eq(&self.count, count)
    }
}

impl Drop for ProvisionSlot {
    fn drop(&mut self) {
        self.count.live.fetch_sub(1, Ordering::SeqCst);
        if self.ready {
            self.count.ready.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl<B: Backend> Manager<B> {
    /// One pass of the provisioner (see the module docs); how many starts it began.
    pub async fn provision(self: &Arc<Self>) -> usize {
        if self.is_closing() {
            return 0;
        }
        let this = Arc::clone(self);
        let found = tokio::task::spawn_blocking(move || this.provision_candidates()).await;
        let Ok(found) = found else { return 0 };
        let mut started = 0;
        for (lambda, pool, target) in found {
            started += self.provision_one(&lambda, &pool, target);
        }
        started
    }

    /// Steps 1-2: each function with a provisioned target, or with provisioned sandboxes
    /// left, resolved. Blocking.
    fn provision_candidates(&self) -> Vec<(LambdaRef, PoolUse<B::Sandbox>, usize)> {
        let mut names: Vec<LambdaName> = match std::fs::read_dir(&self.cfg.registry_dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .take(MAX_SCANNED)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| LambdaName::parse(&n).ok())
                .collect(),
            Err(_) => Vec::new(),
        };
        // Pools holding provisioned sandboxes whose function is gone from the listing.
        for (name, pool) in self.pools.all() {
            if pool.provision_target().is_some_and(|t| t > 0) && !names.contains(&name) {
                names.push(name);
            }
        }
        let mut out = Vec::new();
        for name in names {
            let wanted = match self.registry.cached(&name) {
                Some(h) => h.config.provisioned_concurrency,
                None => match self.registry.lookup(&name) {
                    Ok(h) => h.config.provisioned_concurrency,
                    Err(_) => None,
                },
            };
            let target = wanted.unwrap_or(0) as usize;
            let had = self
                .pools
                .get(&name)
                .and_then(|p| p.provision_target())
                .unwrap_or(0);
            if target == 0 && had == 0 {
                continue;
            }
            match self.resolve_quiet(&name) {
                Ok((lambda, pool)) => out.push((lambda, pool, target)),
                Err(e) => {
                    // Gone or broken: its provisioned sandboxes become on-demand ones.
                    if let Some(p) = self.pools.get(&name) {
                        if p.provision_target().is_some_and(|t| t > 0) {
                            tracing::warn!(lambda = %name, error = %e, "provisioned concurrency stops: the function cannot be resolved");
                            p.abandon_provisioning();
                        }
                    }
                }
            }
        }
        out
    }

    /// Steps 3-4 for one function; how many starts began.
    fn provision_one(
        self: &Arc<Self>,
        lambda: &LambdaRef,
        pool: &PoolUse<B::Sandbox>,
        target: usize,
    ) -> usize {
        let count = pool.provisioning(lambda.handler.version, target);
        let now = Instant::now();
        let mut started = 0;
        if count.may_try(now) {
            while count.live() < count.target() {
                let slot = ProvisionSlot::new(&count);
                let (this, l, p) = (Arc::clone(self), lambda.clone(), PoolUse::clone_of(pool));
                let c = Arc::clone(&count);
                tokio::spawn(async move { this.start_provisioned(l, p, slot, c).await });
                started += 1;
            }
        }
        if count.complete() {
            let retired = pool.retire_stale(lambda.handler.version);
            if !retired.is_empty() {
                tracing::info!(lambda = %lambda.name, count = retired.len(), "provisioned sandboxes of the new version are ready; retiring the old version's");
            }
            drop(retired);
            pool.demote_excess(&count);
        }
        started
    }

    /// One provisioned sandbox: a cold start, the probe, then the pool.
    async fn start_provisioned(
        self: Arc<Self>,
        lambda: LambdaRef,
        pool: PoolUse<B::Sandbox>,
        mut slot: ProvisionSlot,
        count: Arc<ProvisionCount>,
    ) {
        let t = Instant::now();
        let started = async {
            let mut inst = self.cold_start(&lambda).await?;
            let limit = Duration::from_secs(lambda.limits.timeout_s + 30);
            match tokio::time::timeout(limit, crate::runtime_client::probe(&mut inst.conn)).await {
                Ok(Ok(init)) => Ok((inst, init)),
                Ok(Err(e)) => Err(ProvisionError::Probe(e.to_string())),
                Err(_) => Err(ProvisionError::Probe(format!(
                    "no init report within {limit:?}"
                ))),
            }
        };
        match started.await {
            Ok((mut inst, init)) => {
                if self.is_closing() {
                    return;
                }
                count.succeeded();
                slot.mark_ready();
                inst.set_provisioned(Some(slot));
                inst.last_used = Instant::now();
                inst.set_state(SandboxState::Idle, 0);
                tracing::info!(lambda = %lambda.name, sandbox = inst.id, init_ms = init.as_secs_f64() * 1e3, total_ms = t.elapsed().as_secs_f64() * 1e3, "provisioned sandbox ready");
                pool.put_back(inst);
                self.live.idle_returned.notify_waiters();
            }
            Err(e) => {
                let wait = count.failed(Instant::now());
                tracing::warn!(lambda = %lambda.name, error = %e, retry_in_s = wait.as_secs(), "cannot start a provisioned sandbox");
            }
        }
    }
}
