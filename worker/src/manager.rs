//! The lambda manager: finds a warm sandbox for a call or starts one, runs the call, and keeps
//! sandboxes warm afterwards.
//!
//! Rules:
//! - each lambda has a pool of idle sandboxes; a call takes the most recently used one whose
//!   handler version is current and whose process is alive, or starts a new one (cold start);
//! - at most `max_sandboxes_per_lambda` calls of one lambda run at once (and so at most that many
//!   sandboxes exist for it); further calls wait;
//! - at most `handler_cache_size` sandboxes exist in the worker; when full, the least recently
//!   used idle sandbox of any lambda is evicted; when none is idle, the call waits for one (up to
//!   `timeout_s`, then 503);
//! - a sandbox whose call timed out, whose connection broke, or whose handler file changed is
//!   destroyed, never reused; idle sandboxes are destroyed after `idle_timeout_s`;
//! - an idle sandbox is paused (cgroup freezer) after `pause_after_ms` without a call and thawed
//!   by the next one; paused sandboxes are the oldest of their pool, so they are evicted first;
//! - memory is a budget (`memory_budget_mb`): before a cold start, and on every reaper tick,
//!   idle sandboxes are evicted (least recently used, paused first) while the sandboxes' cgroups
//!   together use more; a busy sandbox is never evicted;
//! - a cold start forks the sandbox from a zygote of the import cache when it can
//!   (`zygote.rs`), else starts a fresh interpreter; a sandbox forked from a zygote keeps it
//!   alive until the sandbox is gone;
//! - destroying happens on the blocking pool, off the request path.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use sandbox::cgroup::CgroupSetup;
use sandbox::{Sandbox, SandboxSpec};
use serde::Serialize;
use tokio::net::UnixStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::config::Config;
use crate::error::ApiError;
use crate::lambda_config::LambdaLimits;
use crate::name::LambdaName;
use crate::registry::{Handler, HandlerVersion, Registry};
use crate::runtime_client::{self, Reply, WireError};
use crate::timings::{Phase, Timings};

/// Path of the runtime inside the base filesystem.
pub const RUNTIME_PATH: &str = "/usr/local/lib/lambdaworker/runtime.py";
const PYTHON: &str = "/usr/bin/python3";

/// One entry of the live-sandbox table shown by `/stats` and `admin status`.
#[derive(Debug, Clone, Serialize)]
pub struct LiveInfo {
    pub lambda: String,
    pub id: u64,
    pub state: &'static str,
    pub pid: i32,
    pub uptime_s: f64,
    pub calls: u64,
    #[serde(skip)]
    created: Instant,
    /// The sandbox's cgroup, relative to each hierarchy's root.
    pub cgroup: PathBuf,
}

/// Call counters of one lambda.
#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    cold_starts: AtomicU64,
    zygote_starts: AtomicU64,
    warm_starts: AtomicU64,
    errors: AtomicU64,
}

/// Counters of one lambda as shown by `/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct LambdaStats {
    pub calls: u64,
    /// Calls that started a sandbox (fresh or forked from a zygote).
    pub cold_starts: u64,
    /// Of `cold_starts`, those forked from a zygote.
    pub zygote_starts: u64,
    pub warm_starts: u64,
    pub errors: u64,
    /// Sandboxes of this lambda, busy, idle or starting.
    pub live: usize,
    pub idle: usize,
    /// Of `idle`, how many are paused.
    pub paused: usize,
}

/// Worker-wide cache counters as shown by `/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct CacheStats {
    /// Calls served by a warm sandbox.
    pub hits: u64,
    /// Calls that started a sandbox.
    pub misses: u64,
    pub evictions: u64,
    pub pauses: u64,
    pub unpauses: u64,
    pub memory_in_use_mb: f64,
    pub memory_budget_mb: u64,
}

struct Pool {
    /// (size, semaphore): at most `max_concurrency` calls at once. A lambda whose limit
    /// changes gets a new semaphore; calls already waiting keep the old one.
    gate: Mutex<(usize, Arc<Semaphore>)>,
    /// Calls waiting for the gate.
    waiting: AtomicUsize,
    /// The limits of the handler version last seen (`lambda.json` is read once per version).
    limits: Mutex<Option<(HandlerVersion, LambdaLimits)>>,
    /// Front: least recently used.
    idle: Mutex<VecDeque<Instance>>,
    counters: Counters,
}

/// State shared by the manager and every instance (for cleanup in `Drop`).
struct Shared {
    live: DashMap<u64, LiveInfo>,
    destroying: AtomicUsize,
    destroyed: Notify,
    idle_returned: Notify,
}

/// A warm sandbox with its connection.
struct Instance {
    id: u64,
    version: HandlerVersion,
    sandbox: Option<Sandbox>,
    conn: UnixStream,
    scratch: PathBuf,
    last_used: Instant,
    paused: bool,
    capacity: Option<OwnedSemaphorePermit>,
    /// The zygote this sandbox was forked from; it must outlive the sandbox.
    zygote: Option<Arc<crate::zygote::Zygote>>,
    shared: Arc<Shared>,
}

impl Instance {
    /// Freezes (`true`) or thaws (`false`) the sandbox's cgroup and records it. Blocking.
    fn set_paused(&mut self, paused: bool) -> Result<(), String> {
        let sb = self.sandbox.as_mut().ok_or("no sandbox")?;
        let result = if paused { sb.pause() } else { sb.unpause() };
        result.map_err(|e| e.to_string())?;
        self.paused = paused;
        Ok(())
    }

    fn set_state(&self, state: &'static str, calls_delta: u64) {
        if let Some(mut info) = self.shared.live.get_mut(&self.id) {
            info.state = state;
            info.calls += calls_delta;
        }
    }
}

impl Drop for Instance {
    /// Destroys the sandbox and its scratch directory on the blocking pool; the capacity permit
    /// is released only once the sandbox is gone.
    fn drop(&mut self) {
        let Some(sandbox) = self.sandbox.take() else {
            return;
        };
        let scratch = std::mem::take(&mut self.scratch);
        let permit = self.capacity.take();
        let zygote = self.zygote.take();
        let shared = Arc::clone(&self.shared);
        let id = self.id;
        shared.destroying.fetch_add(1, Ordering::SeqCst);
        let work = move || {
            destroy_sandbox(sandbox, &scratch, id);
            drop(zygote);
            shared.live.remove(&id);
            drop(permit);
            shared.destroying.fetch_sub(1, Ordering::SeqCst);
            shared.destroyed.notify_waiters();
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(work);
            }
            Err(_) => work(),
        }
    }
}

fn destroy_sandbox(mut sandbox: Sandbox, scratch: &Path, id: u64) {
    if let Err(e) = sandbox.destroy() {
        tracing::error!(sandbox = id, error = %e, "cannot destroy sandbox");
    }
    if let Err(e) = crate::cleanup::remove_scratch(scratch) {
        tracing::warn!(sandbox = id, path = %scratch.display(), error = %e, "cannot remove scratch directory");
    }
    tracing::debug!(sandbox = id, "sandbox destroyed");
}

/// The lambda manager (see the module docs).
pub struct Manager {
    cfg: Arc<Config>,
    cgroups: CgroupSetup,
    registry: Registry,
    cgroup_parent: PathBuf,
    handlers_dir: PathBuf,
    pools: DashMap<LambdaName, Arc<Pool>>,
    capacity: Arc<Semaphore>,
    next_id: AtomicU64,
    closing: AtomicBool,
    shared: Arc<Shared>,
    timings: Timings,
    packages: crate::packages::Packages,
    import_cache: crate::zygote::ImportCache,
    /// What every handler sandbox gives up before it runs handler code.
    hardening: sandbox::Hardening,
    memory_budget: u64,
    /// The last measurement of [`Manager::memory_in_use`] (reaper tick or cold start).
    memory_seen: AtomicU64,
    /// The memory limits (MiB) of the sandboxes started since that measurement.
    started_mb_since_measure: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    pauses: AtomicU64,
    unpauses: AtomicU64,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("worker_dir", &self.cfg.worker_dir)
            .field("live", &self.shared.live.len())
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// A manager for `cfg`, putting sandboxes under `cgroup_parent` and scratch directories under
    /// `<worker_dir>/handlers`.
    pub fn new(cfg: Arc<Config>, cgroups: CgroupSetup) -> Result<Self, sandbox::HardenError> {
        let hardening = sandbox::Hardening::new(cfg.sandbox_uid, cfg.sandbox_gid)?;
        let packages =
            crate::packages::Packages::new(Arc::clone(&cfg), cgroups.clone(), hardening.clone());
        Ok(Self {
            import_cache: crate::zygote::ImportCache::new(
                Arc::clone(&cfg),
                cgroups.clone(),
                &hardening,
            ),
            hardening,
            registry: Registry::new(cfg.registry_dir.clone()),
            cgroup_parent: cfg.cgroup_parent(),
            handlers_dir: cfg.worker_dir.join("handlers"),
            pools: DashMap::new(),
            capacity: Arc::new(Semaphore::new(cfg.handler_cache_size)),
            next_id: AtomicU64::new(1),
            closing: AtomicBool::new(false),
            shared: Arc::new(Shared {
                live: DashMap::new(),
                destroying: AtomicUsize::new(0),
                destroyed: Notify::new(),
                idle_returned: Notify::new(),
            }),
            timings: Timings::default(),
            packages,
            memory_budget: memory_budget_bytes(&cfg),
            memory_seen: AtomicU64::new(0),
            started_mb_since_measure: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            pauses: AtomicU64::new(0),
            unpauses: AtomicU64::new(0),
            cgroups,
            cfg,
        })
    }

    fn pool(&self, name: &LambdaName) -> Arc<Pool> {
        if let Some(p) = self.pools.get(name) {
            return Arc::clone(&p);
        }
        Arc::clone(&self.pools.entry(name.clone()).or_insert_with(|| {
            Arc::new(Pool {
                gate: Mutex::new((
                    self.cfg.max_sandboxes_per_lambda,
                    Arc::new(Semaphore::new(self.cfg.max_sandboxes_per_lambda)),
                )),
                waiting: AtomicUsize::new(0),
                limits: Mutex::new(None),
                idle: Mutex::new(VecDeque::new()),
                counters: Counters::default(),
            })
        }))
    }

    /// Runs one call of `name` with the JSON `event`; returns the handler's JSON result.
    pub async fn run(self: &Arc<Self>, name: &LambdaName, event: Bytes) -> Result<Bytes, ApiError> {
        let t = Instant::now();
        let handler = self.registry.lookup(name)?;
        self.timings.record(Phase::Lookup, t.elapsed());
        let pool = self.pool(name);
        pool.counters.calls.fetch_add(1, Ordering::Relaxed);
        let result = match self.limits_for(name, &handler, &pool) {
            Ok(limits) => self.run_in_pool(name, &handler, &pool, limits, event).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            pool.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// The lambda's limits (`lambda.json` over the defaults), read once per handler version.
    fn limits_for(
        &self,
        name: &LambdaName,
        handler: &Handler,
        pool: &Pool,
    ) -> Result<LambdaLimits, ApiError> {
        let mut cached = pool.limits.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((version, limits)) = cached.as_ref() {
            if *version == handler.version {
                return Ok(*limits);
            }
        }
        let limits = LambdaLimits::load(&handler.dir, &self.cfg).map_err(|source| {
            ApiError::BadLambdaConfig {
                lambda: name.to_string(),
                path: source.path.display().to_string(),
                source,
            }
        })?;
        *cached = Some((handler.version, limits));
        Ok(limits)
    }

    /// A slot among the lambda's `max_concurrency`: at once, or after waiting in its bounded
    /// queue; 429 when the queue is full.
    async fn enter_gate(
        &self,
        name: &LambdaName,
        pool: &Pool,
        limits: &LambdaLimits,
    ) -> Result<OwnedSemaphorePermit, ApiError> {
        let gate = {
            let mut gate = pool.gate.lock().unwrap_or_else(|p| p.into_inner());
            if gate.0 != limits.max_concurrency {
                *gate = (
                    limits.max_concurrency,
                    Arc::new(Semaphore::new(limits.max_concurrency)),
                );
            }
            Arc::clone(&gate.1)
        };
        match Arc::clone(&gate).try_acquire_owned() {
            Ok(permit) => return Ok(permit),
            Err(TryAcquireError::Closed) => return Err(unavailable("the worker is shutting down")),
            Err(TryAcquireError::NoPermits) => {}
        }
        let queued = pool.waiting.fetch_add(1, Ordering::SeqCst);
        let result = if queued >= self.cfg.max_queue_per_lambda {
            Err(ApiError::TooManyRequests {
                lambda: name.to_string(),
                max_concurrency: limits.max_concurrency,
                queued,
            })
        } else {
            gate.acquire_owned()
                .await
                .map_err(|_| unavailable("the worker is shutting down"))
        };
        pool.waiting.fetch_sub(1, Ordering::SeqCst);
        result
    }

    async fn run_in_pool(
        self: &Arc<Self>,
        name: &LambdaName,
        handler: &Handler,
        pool: &Arc<Pool>,
        limits: LambdaLimits,
        event: Bytes,
    ) -> Result<Bytes, ApiError> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(unavailable("the worker is shutting down"));
        }
        let t = Instant::now();
        let _gate = self.enter_gate(name, pool, &limits).await?;
        self.timings.record(Phase::Queue, t.elapsed());
        let t = Instant::now();
        let idle = self.take_idle(pool, handler.version);
        self.timings.record(Phase::TakeIdle, t.elapsed());
        let idle = match idle {
            Some(inst) if inst.paused => self.unpause(inst).await,
            other => other,
        };
        let (mut inst, call_phase) = match idle {
            Some(inst) => {
                pool.counters.warm_starts.fetch_add(1, Ordering::Relaxed);
                self.hits.fetch_add(1, Ordering::Relaxed);
                (inst, Phase::Call)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                let inst = self.start_instance(name, handler, &limits).await?;
                pool.counters.cold_starts.fetch_add(1, Ordering::Relaxed);
                if inst.zygote.is_some() {
                    pool.counters.zygote_starts.fetch_add(1, Ordering::Relaxed);
                }
                (inst, Phase::FirstCall)
            }
        };
        inst.set_state("busy", 1);
        let timeout = Duration::from_secs(limits.timeout_s);
        let t = Instant::now();
        let outcome =
            tokio::time::timeout(timeout, runtime_client::call(&mut inst.conn, &event)).await;
        self.timings.record(call_phase, t.elapsed());
        if let (Phase::FirstCall, Some(z)) = (call_phase, &inst.zygote) {
            // The zygote's next spare, now that this first call no longer competes with it.
            let (this, z) = (Arc::clone(self), Arc::clone(z));
            tokio::task::spawn_blocking(move || this.import_cache.refill(&z));
        }
        match outcome {
            Err(_) => {
                tracing::warn!(lambda = %name, sandbox = inst.id, timeout_s = limits.timeout_s, "call timed out; destroying its sandbox");
                drop(inst);
                Err(ApiError::Timeout {
                    lambda: name.to_string(),
                    timeout_s: limits.timeout_s,
                })
            }
            Ok(Err(wire)) => {
                // Killed by the OOM killer: say so (and the next call gets a fresh sandbox).
                let oom = inst.sandbox.as_ref().map_or(0, Sandbox::oom_kills);
                if oom > 0 {
                    tracing::warn!(lambda = %name, sandbox = inst.id, memory_mb = limits.memory_mb, "sandbox ran out of memory; destroying it");
                    drop(inst);
                    return Err(ApiError::OutOfMemory {
                        lambda: name.to_string(),
                        memory_mb: limits.memory_mb,
                    });
                }
                let message = self.sandbox_failure(&inst, &wire);
                tracing::warn!(lambda = %name, sandbox = inst.id, %message, "sandbox failed; destroying it");
                drop(inst);
                Err(ApiError::SandboxFailed {
                    lambda: name.to_string(),
                    message,
                })
            }
            Ok(Ok(reply)) => {
                let t = Instant::now();
                self.release(pool, inst);
                self.timings.record(Phase::Release, t.elapsed());
                match reply {
                    Reply::Ok(body) => Ok(body),
                    Reply::HandlerError(body) => Err(handler_raised(name, &body)),
                    Reply::RequestError(body) => Err(ApiError::BadJson {
                        message: json_field(&body, "message"),
                    }),
                }
            }
        }
    }

    /// Describes a broken sandbox, with the tail of its stderr when there is one.
    fn sandbox_failure(&self, inst: &Instance, wire: &WireError) -> String {
        let mut message = wire.to_string();
        if let Some(sb) = inst.sandbox.as_ref() {
            message.push_str(&format!(" (sandbox {} pid {})", inst.id, sb.pid()));
        }
        let tail = crate::files::read_tail(&inst.scratch.join("stderr"), 1024);
        if !tail.trim().is_empty() {
            message.push_str("; stderr: ");
            message.push_str(tail.trim());
        }
        message
    }

    /// Takes the most recently used idle sandbox of the current version; stale or dead ones are
    /// destroyed on the way.
    fn take_idle(&self, pool: &Pool, version: HandlerVersion) -> Option<Instance> {
        let mut discard = Vec::new();
        let found = {
            let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match idle.pop_back() {
                    None => break None,
                    Some(mut inst) => {
                        let alive = inst.sandbox.as_mut().is_some_and(Sandbox::is_alive);
                        if inst.version == version && alive {
                            break Some(inst);
                        }
                        discard.push(inst);
                    }
                }
            }
        };
        if !discard.is_empty() {
            tracing::info!(count = discard.len(), "retiring stale or dead sandboxes");
        }
        drop(discard);
        found
    }

    /// Thaws a paused sandbox (on the blocking pool); `None` when that fails (the sandbox is
    /// destroyed and the call starts a new one).
    async fn unpause(&self, mut inst: Instance) -> Option<Instance> {
        let t = Instant::now();
        let thawed = tokio::task::spawn_blocking(move || match inst.set_paused(false) {
            Ok(()) => Ok(inst),
            Err(e) => Err((inst.id, e)),
        })
        .await;
        self.timings.record(Phase::Unpause, t.elapsed());
        match thawed {
            Ok(Ok(inst)) => {
                self.unpauses.fetch_add(1, Ordering::Relaxed);
                inst.set_state("busy", 0);
                Some(inst)
            }
            Ok(Err((id, e))) => {
                tracing::warn!(sandbox = id, error = %e, "cannot unpause a sandbox; starting a new one");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "unpause task failed");
                None
            }
        }
    }

    /// Pauses the sandboxes idle for `pause_after_ms` or more. Blocking (cgroup freezer writes);
    /// run by the reaper on the blocking pool. Returns how many were paused.
    pub fn pause_idle(&self) -> usize {
        if self.closing.load(Ordering::SeqCst) {
            return 0;
        }
        let after = Duration::from_millis(self.cfg.pause_after_ms);
        let mut paused = 0;
        // Freezing takes milliseconds: do not hold the pool map's shard locks meanwhile (a
        // call's first lookup of a new lambda would wait on them).
        let pools: Vec<Arc<Pool>> = self.pools.iter().map(|e| Arc::clone(e.value())).collect();
        for pool in &pools {
            // Idle lists are ordered by last use: the candidates are a prefix. Take the ones
            // not yet paused out while freezing them, so no call can take one half-frozen.
            let mut todo = Vec::new();
            {
                let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
                let mut keep = Vec::new();
                while idle.front().is_some_and(|i| i.last_used.elapsed() >= after) {
                    if let Some(inst) = idle.pop_front() {
                        if inst.paused {
                            keep.push(inst);
                        } else {
                            todo.push(inst);
                        }
                    }
                }
                for inst in keep.into_iter().rev() {
                    idle.push_front(inst);
                }
            }
            if todo.is_empty() {
                continue;
            }
            let mut done = Vec::new();
            for mut inst in todo {
                match inst.set_paused(true) {
                    Ok(()) => {
                        inst.set_state("paused", 0);
                        paused += 1;
                        done.push(inst);
                    }
                    Err(e) => {
                        tracing::warn!(sandbox = inst.id, error = %e, "cannot pause an idle sandbox; destroying it");
                    }
                }
            }
            let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            for inst in done.into_iter().rev() {
                idle.push_front(inst);
            }
        }
        if paused > 0 {
            self.pauses.fetch_add(paused as u64, Ordering::Relaxed);
            tracing::debug!(count = paused, "paused idle sandboxes");
        }
        paused
    }

    /// Memory charged to the cgroups of all live sandboxes and zygotes, in bytes. Blocking
    /// (one cgroup file read per sandbox).
    pub fn memory_in_use(&self) -> u64 {
        let sandboxes: u64 = self
            .live_cgroups()
            .iter()
            .map(|cg| self.cgroups.cgroup(cg).memory_usage().unwrap_or(0))
            .sum();
        sandboxes + self.import_cache.memory_in_use()
    }

    /// The cgroups of all live sandboxes (copied out, so no map lock is held while they are used).
    fn live_cgroups(&self) -> Vec<PathBuf> {
        self.shared
            .live
            .iter()
            .map(|e| e.value().cgroup.clone())
            .collect()
    }

    /// Evicts one idle sandbox if the sandboxes use more than the memory budget. Blocking.
    /// Returns whether it evicted one.
    pub fn enforce_memory_budget(&self) -> bool {
        self.started_mb_since_measure.store(0, Ordering::Relaxed);
        let used = self.memory_in_use();
        self.memory_seen.store(used, Ordering::Relaxed);
        if used <= self.memory_budget {
            return false;
        }
        match self.evict_lru() {
            Some(victim) => {
                tracing::debug!(
                    sandbox = victim.id,
                    used_mb = used / (1 << 20),
                    budget_mb = self.memory_budget / (1 << 20),
                    "over the memory budget: evicting the least recently used idle sandbox"
                );
                drop(victim);
                true
            }
            // No idle sandbox left: retire a zygote (it ends with its last sandbox).
            None => self.import_cache.retire_lru(None).is_some(),
        }
    }

    /// Returns a sandbox to its pool after a successful call.
    fn release(&self, pool: &Pool, mut inst: Instance) {
        if self.closing.load(Ordering::SeqCst) {
            return;
        }
        inst.last_used = Instant::now();
        inst.set_state("idle", 0);
        pool.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(inst);
        self.shared.idle_returned.notify_waiters();
    }

    /// Removes the least recently used idle sandbox of any lambda.
    /// Paused sandboxes go first: each pool's front is its oldest, paused if any is.
    fn evict_lru(&self) -> Option<Instance> {
        let mut oldest: Option<((bool, Instant), Arc<Pool>)> = None;
        for entry in &self.pools {
            let pool = entry.value();
            let front = pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .front()
                .map(|i| (!i.paused, i.last_used));
            if let Some(key) = front {
                if oldest.as_ref().is_none_or(|(o, _)| key < *o) {
                    oldest = Some((key, Arc::clone(pool)));
                }
            }
        }
        let (_, pool) = oldest?;
        let victim = pool
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        if victim.is_some() {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        victim
    }

    /// A capacity permit: free, or by evicting an idle sandbox, or by waiting for one.
    async fn acquire_capacity(self: &Arc<Self>) -> Result<OwnedSemaphorePermit, ApiError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.cfg.timeout_s);
        // Memory first: evict idle sandboxes while the live ones use more than the budget,
        // letting each eviction finish so that the next measurement sees its memory gone. The
        // reaper measures once a second; a cold start measures again only when that
        // measurement plus `memory_mb` for every sandbox started since could exceed 90% of the
        // budget (an upper bound: no sandbox can use more than its limit).
        let bound = self
            .memory_seen
            .load(Ordering::Relaxed)
            .saturating_add(self.started_mb_since_measure.load(Ordering::Relaxed) << 20);
        let near = bound > self.memory_budget / 10 * 9;
        while near && tokio::time::Instant::now() < deadline {
            let this = Arc::clone(self);
            let evicted = tokio::task::spawn_blocking(move || this.enforce_memory_budget())
                .await
                .unwrap_or(false);
            if !evicted {
                break;
            }
            while self.shared.destroying.load(Ordering::SeqCst) > 0 {
                let destroyed = self.shared.destroyed.notified();
                tokio::pin!(destroyed);
                destroyed.as_mut().enable();
                if self.shared.destroying.load(Ordering::SeqCst) == 0 {
                    break;
                }
                if tokio::time::timeout_at(deadline, destroyed).await.is_err() {
                    break;
                }
            }
        }
        loop {
            let notified = self.shared.idle_returned.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match Arc::clone(&self.capacity).try_acquire_owned() {
                Ok(p) => return Ok(p),
                Err(TryAcquireError::Closed) => {
                    return Err(unavailable("the worker is shutting down"))
                }
                Err(TryAcquireError::NoPermits) => {}
            }
            if let Some(victim) = self.evict_lru() {
                tracing::debug!(
                    sandbox = victim.id,
                    "evicting the least recently used idle sandbox"
                );
                drop(victim);
            }
            tokio::select! {
                permit = Arc::clone(&self.capacity).acquire_owned() => {
                    return permit.map_err(|_| unavailable("the worker is shutting down"));
                }
                () = &mut notified => continue,
                () = tokio::time::sleep_until(deadline) => {
                    return Err(unavailable(&format!(
                        "all {} sandboxes are busy (handler_cache_size)",
                        self.cfg.handler_cache_size
                    )));
                }
            }
        }
    }

    /// Cold start: a new sandbox for `name`, connected and ready to take a request.
    async fn start_instance(
        self: &Arc<Self>,
        name: &LambdaName,
        handler: &Handler,
        limits: &LambdaLimits,
    ) -> Result<Instance, ApiError> {
        // Packages first, without holding a capacity slot: an install may take minutes.
        let t = Instant::now();
        let this = Arc::clone(self);
        let (lambda, dir) = (name.clone(), handler.dir.clone());
        let packages = if handler.version.has_requirements() {
            tokio::task::spawn_blocking(move || {
                let list = this.packages.ensure(&lambda, &dir)?;
                Ok::<_, ApiError>(
                    list.iter()
                        .map(|p| (this.packages.path_of(p), p.rel()))
                        .collect::<Vec<_>>(),
                )
            })
            .await
            .map_err(|e| ApiError::Internal {
                message: format!("package task failed: {e}"),
            })??
        } else {
            Vec::new()
        };
        self.timings.record(Phase::Packages, t.elapsed());
        let t = Instant::now();
        let permit = self.acquire_capacity().await?;
        self.started_mb_since_measure
            .fetch_add(limits.memory_mb, Ordering::Relaxed);
        self.timings.record(Phase::Capacity, t.elapsed());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let this = Arc::clone(self);
        let lambda = name.clone();
        let for_spawn = handler.clone();
        let started = Instant::now();
        let limits = *limits;
        let spawned = tokio::task::spawn_blocking(move || {
            this.spawn_sandbox(id, &lambda, &for_spawn, &packages, &limits)
        })
        .await
        .map_err(|e| ApiError::Internal {
            message: format!("sandbox start task failed: {e}"),
        })?;
        let ((sandbox, conn, zygote), scratch) =
            spawned.map_err(|message| ApiError::SandboxFailed {
                lambda: name.to_string(),
                message,
            })?;
        self.timings.record(Phase::Spawn, started.elapsed());
        if zygote.is_none() {
            let steps = sandbox.start_timings();
            self.timings.record(Phase::SpawnCgroup, steps.cgroup);
            self.timings
                .record(Phase::SpawnPrepareClone, steps.prepare_clone);
            self.timings
                .record(Phase::SpawnChildSetupExec, steps.child_setup_exec);
        }
        let pid = sandbox.pid();
        let conn = conn.and_then(UnixStream::from_std);
        let shared = Arc::clone(&self.shared);
        shared.live.insert(
            id,
            LiveInfo {
                lambda: name.to_string(),
                id,
                state: "starting",
                pid,
                uptime_s: 0.0,
                calls: 0,
                created: Instant::now(),
                cgroup: sandbox.cgroup_path().to_owned(),
            },
        );
        let inst_conn = match conn {
            Ok(c) => c,
            Err(e) => {
                let message = format!("cannot register the connection to sandbox {id}: {e}");
                destroy_detached(sandbox, scratch, id, permit, shared, zygote);
                return Err(ApiError::SandboxFailed {
                    lambda: name.to_string(),
                    message,
                });
            }
        };
        tracing::debug!(lambda = %name, sandbox = id, pid, spawn_ms = started.elapsed().as_secs_f64() * 1e3, "sandbox started");
        Ok(Instance {
            id,
            version: handler.version,
            sandbox: Some(sandbox),
            conn: inst_conn,
            scratch,
            last_used: Instant::now(),
            paused: false,
            capacity: Some(permit),
            zygote,
            shared,
        })
    }

    /// Blocking part of a cold start: scratch directory, listening socket, sandbox process.
    fn spawn_sandbox(
        &self,
        id: u64,
        name: &LambdaName,
        handler: &Handler,
        packages: &[(PathBuf, PathBuf)],
        limits: &LambdaLimits,
    ) -> Result<(Spawned, PathBuf), String> {
        // The lambda's directory (never a link), held open until the sandbox has mounted it.
        let (dir_fd, same) = handler.open_dir()?;
        if !same {
            tracing::debug!(lambda = %name, "the lambda's directory was replaced since its lookup; the next call retires this sandbox");
        }
        let handler_dir = PathBuf::from(format!("/proc/self/fd/{}", dir_fd.as_raw_fd()));
        let scratch = self.handlers_dir.join(name.as_str()).join(id.to_string());
        std::fs::create_dir_all(&scratch)
            .map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
        // A bounded tmpfs, owned by the sandbox user: its /host, with its stdout and stderr.
        let (uid, gid) = (self.hardening.uid, self.hardening.gid);
        if let Err(e) = crate::cleanup::mount_scratch(&scratch, self.cfg.host_mb, uid, gid) {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(e);
        }
        let result = self.spawn_in(id, name, &handler_dir, &scratch, packages, limits);
        drop(dir_fd);
        if result.is_err() {
            let _ = crate::cleanup::remove_scratch(&scratch);
        }
        result.map(|spawned| (spawned, scratch))
    }

    fn spawn_in(
        &self,
        id: u64,
        name: &LambdaName,
        handler_dir: &Path,
        scratch: &Path,
        packages: &[(PathBuf, PathBuf)],
        limits: &LambdaLimits,
    ) -> Result<Spawned, String> {
        let cgroup = self.cgroup_parent.join(format!("sb-{id}"));
        if self.import_cache.enabled() {
            let t = Instant::now();
            match self.fork_from_zygote(name, handler_dir, scratch, packages, limits) {
                Ok(Some(forked)) => {
                    self.timings.record(Phase::SpawnZygote, t.elapsed());
                    return Ok(forked);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(lambda = %name, sandbox = id, error = %e, "fork from a zygote failed; starting a fresh sandbox");
                    let _ = std::fs::remove_file(scratch.join("server_pipe"));
                }
            }
        }
        let started = spawn_lambda_sandbox(
            &self.cfg,
            &self.cgroups,
            cgroup,
            name,
            handler_dir,
            scratch,
            packages,
            limits,
            &self.hardening,
        )
        .map_err(|e| format!("sandbox {id}: {e}"))?;
        Ok((started.0, started.1, None))
    }

    /// A handler sandbox forked from the import cache, connected like a fresh one.
    fn fork_from_zygote(
        &self,
        name: &LambdaName,
        handler_dir: &Path,
        scratch: &Path,
        packages: &[(PathBuf, PathBuf)],
        limits: &LambdaLimits,
    ) -> Result<Option<Spawned>, String> {
        let (listener, conn) = listen_and_connect(scratch)?;
        let env = sandbox_env(name, packages);
        let req = crate::zygote::HandlerRequest {
            handler_dir,
            scratch,
            packages,
            listen: listener.as_fd(),
            env: &env,
            limits,
            hardening: &self.hardening,
        };
        let Some(forked) = self
            .import_cache
            .fork_handler(&req)
            .map_err(|e| e.to_string())?
        else {
            drop(listener);
            let _ = std::fs::remove_file(scratch.join("server_pipe"));
            return Ok(None);
        };
        drop(listener);
        let conn = conn.set_nonblocking(true).map(|()| conn);
        Ok(Some((forked.sandbox, conn, Some(forked.zygote))))
    }

    /// Starts the root zygote (blocking); failures are logged, and cold starts try again.
    pub fn start_import_cache(&self) {
        if let Err(e) = self.import_cache.start() {
            tracing::warn!(error = %e, "import cache: no root zygote yet");
        }
    }

    /// The import cache's counters and zygotes (blocking, cheap).
    pub fn import_cache_stats(&self) -> crate::zygote::ImportCacheStats {
        self.import_cache.stats()
    }

    /// Cache counters and memory (reads every sandbox's cgroup: blocking, cheap).
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            pauses: self.pauses.load(Ordering::Relaxed),
            unpauses: self.unpauses.load(Ordering::Relaxed),
            memory_in_use_mb: (self.memory_in_use() as f64 / 1048576.0 * 10.0).round() / 10.0,
            memory_budget_mb: self.memory_budget / (1 << 20),
        }
    }

    /// Removes pip staging directories of workers that died during an install (blocking).
    pub fn remove_stale_package_staging(&self) -> usize {
        self.packages.remove_stale_staging()
    }

    /// Package install counters.
    pub fn package_stats(&self) -> crate::packages::PackageStats {
        self.packages.stats()
    }

    /// Per-phase timings of this worker's calls.
    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// The live-sandbox table, ordered by id.
    pub fn live(&self) -> Vec<LiveInfo> {
        let mut v: Vec<LiveInfo> = self
            .shared
            .live
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

    /// Per-lambda counters.
    pub fn lambda_stats(&self) -> std::collections::BTreeMap<String, LambdaStats> {
        let mut live: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for e in self.shared.live.iter() {
            *live.entry(e.value().lambda.clone()).or_default() += 1;
        }
        self.pools
            .iter()
            .map(|e| {
                let c = &e.value().counters;
                (
                    e.key().to_string(),
                    LambdaStats {
                        calls: c.calls.load(Ordering::Relaxed),
                        cold_starts: c.cold_starts.load(Ordering::Relaxed),
                        zygote_starts: c.zygote_starts.load(Ordering::Relaxed),
                        warm_starts: c.warm_starts.load(Ordering::Relaxed),
                        errors: c.errors.load(Ordering::Relaxed),
                        live: live.get(e.key().as_str()).copied().unwrap_or(0),
                        idle: e.value().idle.lock().map(|i| i.len()).unwrap_or(0),
                        paused: e
                            .value()
                            .idle
                            .lock()
                            .map(|i| i.iter().filter(|x| x.paused).count())
                            .unwrap_or(0),
                    },
                )
            })
            .collect()
    }

    /// Destroys idle sandboxes unused for `idle_timeout_s`.
    pub fn reap_idle(&self) -> usize {
        let limit = Duration::from_secs(self.cfg.idle_timeout_s);
        let mut reaped = Vec::new();
        for entry in &self.pools {
            let mut idle = entry.value().idle.lock().unwrap_or_else(|p| p.into_inner());
            while idle.front().is_some_and(|i| i.last_used.elapsed() >= limit) {
                if let Some(inst) = idle.pop_front() {
                    reaped.push(inst);
                }
            }
        }
        let n = reaped.len();
        if n > 0 {
            tracing::info!(count = n, "destroying idle sandboxes");
        }
        n
    }

    /// Stops taking calls and destroys every idle sandbox; waits (up to `deadline`) until all
    /// destroys that are under way have finished.
    pub async fn shutdown(&self, deadline: Duration) {
        self.closing.store(true, Ordering::SeqCst);
        self.capacity.close();
        for entry in &self.pools {
            entry
                .value()
                .gate
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .1
                .close();
            let drained: Vec<Instance> = entry
                .value()
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain(..)
                .collect();
            drop(drained);
        }
        self.import_cache.close();
        let wait = async {
            loop {
                let notified = self.shared.destroyed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.shared.destroying.load(Ordering::SeqCst) == 0 {
                    break;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(deadline, wait).await.is_err() {
            tracing::warn!("some sandboxes were still being destroyed at the shutdown deadline");
        }
        // Calls still running past the drain deadline: end their sandboxes now (their callers
        // get 502), so that the zygotes they hold end within this deadline, not after another.
        let busy = self.live_cgroups();
        if !busy.is_empty() {
            tracing::warn!(
                sandboxes = busy.len(),
                "ending sandboxes whose calls outlived the shutdown deadline"
            );
            let cgroups = self.cgroups.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for rel in busy {
                    if let Err(e) = cgroups.cgroup(&rel).kill_all() {
                        tracing::debug!(cgroup = %rel.display(), error = %e, "kill at shutdown");
                    }
                }
            })
            .await;
        }
        // Zygotes end after their sandboxes; wait for that too, so that the final cleanup does
        // not race their own.
        let zygotes = async {
            while self.import_cache.any_alive() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(deadline, zygotes).await.is_err() {
            tracing::warn!("some zygotes were still alive at the shutdown deadline");
        }
    }

    /// True once shutdown has begun.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Number of live sandboxes.
    pub fn live_count(&self) -> usize {
        self.shared.live.len()
    }
}

/// Cleans up a sandbox that never became an [`Instance`] (then releases its zygote).
fn destroy_detached(
    sandbox: Sandbox,
    scratch: PathBuf,
    id: u64,
    permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
    zygote: Option<Arc<crate::zygote::Zygote>>,
) {
    shared.destroying.fetch_add(1, Ordering::SeqCst);
    tokio::task::spawn_blocking(move || {
        destroy_sandbox(sandbox, &scratch, id);
        drop(zygote);
        shared.live.remove(&id);
        drop(permit);
        shared.destroying.fetch_sub(1, Ordering::SeqCst);
        shared.destroyed.notify_waiters();
    });
}

fn unavailable(message: &str) -> ApiError {
    ApiError::Unavailable {
        message: message.to_owned(),
    }
}

fn json_field(body: &[u8], key: &str) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get(key).and_then(|m| m.as_str().map(str::to_owned)))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

fn handler_raised(name: &LambdaName, body: &[u8]) -> ApiError {
    ApiError::HandlerRaised {
        lambda: name.to_string(),
        kind: json_field(body, "type"),
        message: json_field(body, "message"),
        traceback: json_field(body, "traceback"),
    }
}

/// Starts the sandbox of one call of `name` exactly as the manager does for a cold start: a
/// listening `server_pipe` socket in `scratch` (passed in as fd 3), the spec (base read-only,
/// `/handler` read-only, `scratch` as `/host`, the lambda's `packages` (host directory,
/// `name/version`) read-only under `/packages` and on `LAMBDA_PACKAGES`, cgroup limits and
/// `/tmp` size from `limits`) and the runtime.
/// Returns the sandbox and a non-blocking connection to its runtime (already queued in the
/// socket's backlog, so the first request can be written at once). Blocking; `scratch` must
/// exist. Public so that benchmarks can call a sandbox directly, without the HTTP layer.
#[allow(clippy::too_many_arguments)]
pub fn spawn_lambda_sandbox(
    cfg: &Config,
    cgroups: &CgroupSetup,
    cgroup: PathBuf,
    name: &LambdaName,
    handler_dir: &Path,
    scratch: &Path,
    packages: &[(PathBuf, PathBuf)],
    limits: &LambdaLimits,
    hardening: &sandbox::Hardening,
) -> Result<(Sandbox, std::io::Result<std::os::unix::net::UnixStream>), String> {
    let t0 = Instant::now();
    let (listener, conn) = listen_and_connect(scratch)?;
    let mut builder = SandboxSpec::builder(&cfg.base_dir, cgroup);
    if !packages.is_empty() {
        builder = builder.view("/packages", packages.to_vec());
    }
    // The handler directory is attached as a detached clone of what `handler_dir` names now
    // (the worker passes `/proc/self/fd/N` of the directory it checked), never by path in the
    // child.
    let handler_mount = sandbox::DetachedMount::clone_of(handler_dir, false)
        .map_err(|e| format!("cannot clone the handler directory: {e}"))?;
    builder = builder
        .attach(Arc::new(handler_mount), "/handler")
        .mount(scratch, "/host", true)
        .tmp_mb(limits.tmp_mb)
        .hostname("lambda")
        .net(cfg.net.sandbox())
        .limits(limits.cgroup())
        .harden(hardening.clone())
        .command([PYTHON, "-B", "-S", RUNTIME_PATH]);
    for (key, value) in sandbox_env(name, packages) {
        builder = builder.env(&key, &value);
    }
    let spec = builder
        .cwd("/host")
        .output(scratch.join("stdout"), scratch.join("stderr"))
        .build()
        .map_err(|e| format!("invalid sandbox spec: {e}"))?;
    let prepared = t0.elapsed();
    let sandbox = Sandbox::spawn(&spec, cgroups, &[listener.as_fd()])
        .map_err(|e| format!("cannot start: {e}"))?;
    tracing::debug!(
        lambda = %name,
        socket_spec_ms = prepared.as_secs_f64() * 1e3,
        "scratch socket and spec prepared"
    );
    drop(listener);
    let conn = conn.set_nonblocking(true).map(|()| conn);
    Ok((sandbox, conn))
}

/// What a cold start made: the sandbox, a connection to its runtime, and the zygote it was
/// forked from (if any).
type Spawned = (
    Sandbox,
    std::io::Result<std::os::unix::net::UnixStream>,
    Option<Arc<crate::zygote::Zygote>>,
);

/// Binds `<scratch>/server_pipe` and connects to it at once: the connection waits in the
/// backlog until the runtime accepts it, so the first request can be written right away.
fn listen_and_connect(
    scratch: &Path,
) -> Result<
    (
        std::os::unix::net::UnixListener,
        std::os::unix::net::UnixStream,
    ),
    String,
> {
    let sock = scratch.join("server_pipe");
    let listener = std::os::unix::net::UnixListener::bind(&sock)
        .map_err(|e| format!("cannot listen on {}: {e}", sock.display()))?;
    let conn = std::os::unix::net::UnixStream::connect(&sock)
        .map_err(|e| format!("cannot connect to {}: {e}", sock.display()))?;
    Ok((listener, conn))
}

/// The environment of a handler sandbox, fresh or forked.
fn sandbox_env(name: &LambdaName, packages: &[(PathBuf, PathBuf)]) -> Vec<(String, String)> {
    let rels: Vec<String> = packages
        .iter()
        .map(|(_, rel)| rel.display().to_string())
        .collect();
    let mut env = crate::zygote::zygote_env(&rels);
    env.push(("LAMBDA_NAME".into(), name.as_str().to_owned()));
    env
}

/// The memory budget in bytes: `memory_budget_mb`, or half of the machine's memory when 0.
fn memory_budget_bytes(cfg: &Config) -> u64 {
    if cfg.memory_budget_mb > 0 {
        return cfg.memory_budget_mb * 1024 * 1024;
    }
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
        })
        .unwrap_or(4 * 1024 * 1024);
    total_kib * 1024 / 2
}
