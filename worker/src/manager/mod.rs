//! The lambda manager: resolves a call's lambda, finds a warm sandbox for it or starts one, runs
//! the call, and keeps sandboxes warm afterwards.
//!
//! A call, in order ([`Manager::run`]):
//! 1. resolve the lambda once (`resolve.rs`): registry lookup (remembered until the registry
//!    changes), its pool, its limits and setup (entry, environment, layers);
//! 2. pass its gate (`gate.rs`): at most `max_concurrency` calls of one lambda run at once
//!    (`lambda.json`, default `max_sandboxes_per_lambda`), up to `max_queue_per_lambda` wait, one
//!    more gets 429;
//! 3. take the most recently used idle sandbox of the current handler version whose process is
//!    alive, thawing it if paused (`pool.rs`), or start one (`cold_start.rs`, under the capacity
//!    rules of `capacity.rs`);
//! 4. one frame to the runtime (the call's request id and deadline, then the event) and one
//!    back, under the lambda's `timeout_s`, while the sandbox's output is read into the
//!    function's log (`call.rs`, `crate::logs`), which gets the call's START, END and REPORT
//!    lines;
//! 5. a sandbox whose call timed out or whose connection broke is destroyed, never reused; one
//!    that answered goes back to its pool.
//!
//! Between calls the reaper pauses idle sandboxes after `pause_after_ms` (cgroup freezer),
//! destroys them after `idle_timeout_s`, and enforces the memory budget. Destroying happens on
//! the blocking pool, off the request path.
//!
//! The policy here acts through a [`Backend`] (`backend.rs`): the worker's is
//! [`crate::launch::Launcher`]; the unit tests (`manager/tests.rs`) use a fake that needs no
//! root (`manager/fake.rs`).

pub mod backend;
mod call;
mod capacity;
mod cold_start;
pub mod error;
mod gate;
mod gpu_slots;
mod install;
mod instance;
mod invoke;
mod pool;
mod provision;
mod resolve;
mod shutdown;
mod stats;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod gpu_tests;
#[cfg(test)]
mod log_tests;
#[cfg(test)]
mod provision_tests;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::Config;
use crate::logs::{LogWriter, PeakReader};
use crate::name::LambdaName;
use crate::registry::Registry;
use crate::runtime_client::RequestId;
use crate::timings::{Phase, Timings};

pub use backend::{
    Backend, FunctionSetup, LambdaRef, LayerDir, PackageDir, SandboxHandle, StartError,
    StartRequest, Started, VolumeMount, LAYERS_DIR,
};
pub use error::{RunError, Unavailable};
pub use install::Installed;
pub use instance::{LiveInfo, SandboxState};
pub use invoke::{Admission, CallReport, InvokeOptions, Invoked};
pub use stats::{CacheStats, LambdaStats};

use gate::GateError;
use instance::{Instance, Live};
use pool::{Counters, PoolUse, Pools};

/// Worker-wide cache counters.
#[derive(Debug, Default)]
struct CacheCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    pauses: AtomicU64,
    unpauses: AtomicU64,
}

/// The lambda manager (see the module docs).
pub struct Manager<B: Backend> {
    cfg: Arc<Config>,
    backend: B,
    registry: Registry,
    pools: Pools<B::Sandbox>,
    capacity: capacity::Capacity,
    /// At most `gpu_sandboxes` GPU sandboxes alive (`gpu_slots.rs`).
    gpu_slots: Arc<tokio::sync::Semaphore>,
    /// This machine's GPUs, read once when the manager is made.
    gpu_host: Option<Arc<crate::gpu::GpuHost>>,
    live: Arc<Live>,
    next_id: AtomicU64,
    closing: AtomicBool,
    timings: Timings,
    /// Calls and latency per function (`/metrics`), bounded by `metrics_max_functions`.
    metrics: crate::metrics::Functions,
    counters: CacheCounters,
    /// The function logs' writer, which every sandbox's capture sends to.
    logs: Arc<LogWriter>,
    /// The backend's reader of a cgroup's peak memory (a call that asks for its log's tail).
    peak: PeakReader,
}

impl<B: Backend> std::fmt::Debug for Manager<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("worker_dir", &self.cfg.worker_dir)
            .field("live", &self.live.len())
            .finish_non_exhaustive()
    }
}

/// How a call got its sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Warm,
    Cold,
}

impl<B: Backend> Manager<B> {
    /// A manager for `cfg` whose sandboxes `backend` makes, over the local registry
    /// `cfg.registry_dir`.
    pub fn new(cfg: Arc<Config>, backend: B) -> Self {
        let registry = Registry::new(cfg.registry_dir.clone());
        Self::with_registry(cfg, backend, registry)
    }

    /// [`Manager::new`] with the registry to look functions up in (registry mode: the cache
    /// of a registry server). Starts the function logs' writer thread
    /// (`<function_logs>/<function>/<worker>.log`).
    pub fn with_registry(cfg: Arc<Config>, backend: B, registry: Registry) -> Self {
        let peak = backend.peak_reader();
        let logs = LogWriter::start(crate::logs::Settings::of(&cfg), Arc::clone(&peak));
        Self {
            logs: Arc::new(logs),
            peak,
            registry,
            pools: Pools::new(pool::max_pools(cfg.handler_cache_size)),
            capacity: capacity::Capacity::new(
                cfg.handler_cache_size,
                capacity::memory_budget_bytes(&cfg),
            ),
            gpu_slots: Arc::new(tokio::sync::Semaphore::new(cfg.gpu_sandboxes.max(1))),
            gpu_host: crate::gpu::GpuHost::detect(&cfg.gpu_libraries).map(Arc::new),
            live: Arc::new(Live::default()),
            next_id: AtomicU64::new(1),
            closing: AtomicBool::new(false),
            timings: Timings::default(),
            metrics: crate::metrics::Functions::new(cfg.metrics_max_functions),
            counters: CacheCounters::default(),
            backend,
            cfg,
        }
    }

    /// This manager with `host` as the machine's GPUs instead of the ones it found (tests, and
    /// a caller that read the host itself).
    pub fn with_gpu_host(mut self, host: Option<crate::gpu::GpuHost>) -> Self {
        self.gpu_host = host.map(Arc::new);
        self
    }

    /// The backend that makes this manager's sandboxes.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Per-phase timings of this worker's calls.
    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// Calls and latency per function, as `/metrics` exports them.
    pub fn metrics(&self) -> &crate::metrics::Functions {
        &self.metrics
    }

    /// The function logs' writer.
    pub fn logs(&self) -> &LogWriter {
        &self.logs
    }

    /// True once shutdown has begun.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs one call of `name` with the JSON `event`; returns the entry's JSON result. The
    /// function sees `request_id` as its `context.aws_request_id`.
    pub async fn run(
        self: &Arc<Self>,
        name: &LambdaName,
        event: Bytes,
        request_id: &RequestId,
    ) -> Result<Bytes, RunError> {
        self.invoke(name, event, request_id, InvokeOptions::default())
            .await
            .result
    }

    /// [`Manager::run`] with `options`, and the call's report.
    pub async fn invoke(
        self: &Arc<Self>,
        name: &LambdaName,
        event: Bytes,
        request_id: &RequestId,
        options: InvokeOptions,
    ) -> Invoked {
        let started = Instant::now();
        let mut report = CallReport::default();
        let mut events = None;
        // 1. Resolve (counts the call in the lambda's pool).
        let result = match self.resolve_call(name).await {
            Ok((lambda, pool)) => {
                report.memory_mb = lambda.limits.memory_mb;
                events = Some(lambda.handler.config.events());
                let result = self
                    .run_resolved(&lambda, &pool, event, request_id, options, &mut report)
                    .await;
                if result.is_err() {
                    Counters::add(&pool.counters.errors);
                }
                result
            }
            Err(e) => Err(e),
        };
        // A call that reached a sandbox: its latency, by start.
        if !report.duration.is_zero() {
            let cold = report.init.is_some();
            self.metrics
                .of(name.as_str())
                .latency(cold, started.elapsed());
            crate::metrics::note_start(cold);
        }
        Invoked {
            result,
            report,
            events,
        }
    }

    async fn run_resolved(
        self: &Arc<Self>,
        lambda: &LambdaRef,
        pool: &PoolUse<B::Sandbox>,
        event: Bytes,
        request_id: &RequestId,
        options: InvokeOptions,
        report: &mut CallReport,
    ) -> Result<Bytes, RunError> {
        if self.is_closing() {
            return Err(RunError::shutting_down());
        }
        // 2. The gate.
        let t = Instant::now();
        let max_queue = match options.admission {
            Admission::Queue => self.cfg.max_queue_per_lambda,
            Admission::FreeSlot => 0,
        };
        let _slot = pool
            .gate
            .enter(lambda.limits.max_concurrency, max_queue)
            .await
            .map_err(|e| match e {
                GateError::Full {
                    max_concurrency,
                    queued,
                } => RunError::TooManyRequests {
                    lambda: lambda.name.to_string(),
                    max_concurrency,
                    queued,
                },
                GateError::Closed => RunError::shutting_down(),
            })?;
        self.timings.record(Phase::Queue, t.elapsed());
        // 3. A warm sandbox, or a cold start.
        let (inst, start) = match self.take_warm(lambda, pool).await {
            Some(inst) => {
                Counters::add(&pool.counters.warm_starts);
                Self::count(&self.counters.hits);
                (inst, Start::Warm)
            }
            None => {
                Self::count(&self.counters.misses);
                let t = Instant::now();
                let inst = self.cold_start(lambda).await?;
                report.init = Some(t.elapsed());
                Counters::add(&pool.counters.cold_starts);
                if inst.sandbox().is_some_and(SandboxHandle::forked) {
                    Counters::add(&pool.counters.zygote_starts);
                }
                (inst, Start::Cold)
            }
        };
        // 4-5. The call and what becomes of the sandbox.
        let call = call::CallOf {
            lambda,
            pool,
            start,
            request_id,
            tail: options.tail,
        };
        self.call(call, inst, event, report).await
    }

    /// The most recently used live idle sandbox of the lambda's current version, thawed.
    async fn take_warm(
        &self,
        lambda: &LambdaRef,
        pool: &PoolUse<B::Sandbox>,
    ) -> Option<Instance<B::Sandbox>> {
        let t = Instant::now();
        let (found, discard) = pool.take_idle(lambda.handler.version);
        self.timings.record(Phase::TakeIdle, t.elapsed());
        if !discard.is_empty() {
            tracing::info!(lambda = %lambda.name, count = discard.len(), "retiring stale or dead sandboxes");
        }
        drop(discard);
        match found {
            Some(inst) if inst.paused => self.unpause(inst).await,
            other => other,
        }
    }

    /// Thaws a paused sandbox on the blocking pool; `None` when that fails (the sandbox is
    /// destroyed and the call starts a new one).
    async fn unpause(&self, mut inst: Instance<B::Sandbox>) -> Option<Instance<B::Sandbox>> {
        let t = Instant::now();
        let thawed = tokio::task::spawn_blocking(move || match inst.set_paused(false) {
            Ok(()) => Ok(inst),
            Err(e) => Err((inst.id, e)),
        })
        .await;
        self.timings.record(Phase::Unpause, t.elapsed());
        match thawed {
            Ok(Ok(inst)) => {
                Self::count(&self.counters.unpauses);
                inst.set_state(SandboxState::Busy, 0);
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

    /// Returns a sandbox to its pool after a successful call.
    fn release(&self, pool: &PoolUse<B::Sandbox>, mut inst: Instance<B::Sandbox>) {
        if self.is_closing() {
            return;
        }
        inst.last_used = Instant::now();
        inst.set_state(SandboxState::Idle, 0);
        pool.put_back(inst);
        self.live.idle_returned.notify_waiters();
    }

    /// Pauses the sandboxes idle for `pause_after_ms` or more as of `now`. Blocking (cgroup
    /// freezer writes); run by the reaper on the blocking pool. Returns how many were paused.
    pub fn pause_idle(&self, now: Instant) -> usize {
        if self.is_closing() {
            return 0;
        }
        let after = Duration::from_millis(self.cfg.pause_after_ms);
        let mut paused = 0;
        // Freezing takes milliseconds: no map lock is held meanwhile.
        for (_, pool) in self.pools.all() {
            let Some((hold, todo)) = pool.take_to_pause(now, after) else {
                continue;
            };
            let mut done = Vec::new();
            for mut inst in todo {
                let t = Instant::now();
                let frozen = inst.set_paused(true);
                self.timings.record(Phase::Pause, t.elapsed());
                match frozen {
                    Ok(()) => {
                        inst.set_state(SandboxState::Paused, 0);
                        paused += 1;
                        done.push(inst);
                    }
                    Err(e) => {
                        tracing::warn!(sandbox = inst.id, error = %e, "cannot pause an idle sandbox; destroying it");
                    }
                }
            }
            pool.put_back_paused(done);
            drop(hold);
        }
        if paused > 0 {
            self.counters
                .pauses
                .fetch_add(paused as u64, Ordering::Relaxed);
            tracing::debug!(count = paused, "paused idle sandboxes");
        }
        paused
    }

    /// Destroys idle sandboxes unused for `idle_timeout_s` as of `now`; how many.
    pub fn reap_idle(&self, now: Instant) -> usize {
        let limit = Duration::from_secs(self.cfg.idle_timeout_s);
        let reaped: Vec<_> = self
            .pools
            .all()
            .into_iter()
            .flat_map(|(_, pool)| pool.take_expired(now, limit))
            .collect();
        let n = reaped.len();
        if n > 0 {
            tracing::info!(count = n, "destroying idle sandboxes");
        }
        n
    }

    /// Starts what sandboxes share (the root zygote). Blocking.
    pub fn start_shared(&self) {
        self.backend.start_shared();
    }
}
