//! The worker's lifecycle: start (clean leftovers, bind, serve), graceful shutdown.
//!
//! Start, in order: in registry mode, make the cache the registry directory and the server's
//! client; validate the config, detect cgroups, remove what a crashed run left behind, create
//! the scratch root, bind the HTTP port, raise the open-files limit, make the launcher, then
//! where functions come from (local mode: open the registry directory's store, recovering it,
//! and the management API over it; registry mode: start revalidating, forward management
//! requests), make the manager over the launcher and that registry, remove package staging
//! directories of dead workers, start the root zygote, serve (at most `max_connections`
//! connections; one more gets a 503 and is closed; [`crate::serve`]) with the reaper beside. Shutdown: stop accepting, let in-flight requests finish under
//! `shutdown_timeout_s`, shut the manager down (`manager/shutdown.rs`), remove the worker's
//! cgroups and scratch directories.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sandbox::cgroup::{CgroupSetup, CgroupVersion};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, ApiState};
use crate::aws::arn::Arns;
use crate::aws::{Credentials, LambdaApi};
use crate::cleanup;
use crate::config::{Config, ConfigError};
use crate::functions::{DirStore, FunctionStore};
use crate::http_client;
use crate::invoke::{AsyncQueue, InvokeContext};
use crate::lambda_config::LambdaLimits;
use crate::launch::Launcher;
use crate::management::Functions;
use crate::manager::{Backend, Manager};
use crate::registry::{Registry, Remote};
use crate::serve;
use crate::{WorkerError, WorkerManager};

/// A running worker (HTTP API bound, ready to serve).
#[derive(Debug)]
pub struct Worker {
    gauge: Arc<crate::balance::Gauge>,
    addr: SocketAddr,
    cfg: Arc<Config>,
    manager: Arc<WorkerManager>,
    stop: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
    reaper_task: JoinHandle<()>,
    queue: Arc<AsyncQueue>,
    dispatch_task: JoinHandle<()>,
}

impl Worker {
    /// Cleans what a crashed run left behind, binds the HTTP API and starts serving.
    pub async fn start(config: Config) -> Result<Worker, WorkerError> {
        let mut config = config;
        let remote = registry_mode(&mut config)?;
        config.validate_for_worker()?;
        let cfg = Arc::new(config);
        let cgroups = tokio::task::spawn_blocking(CgroupSetup::detect)
            .await
            .map_err(|source| WorkerError::Task {
                what: "cgroup detection",
                source,
            })??;
        let version = match cgroups.version() {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        };
        {
            let cfg = Arc::clone(&cfg);
            let cg = cgroups.clone();
            let summary = tokio::task::spawn_blocking(move || cleanup::remove_leftovers(&cfg, &cg))
                .await
                .map_err(|source| WorkerError::Task {
                    what: "cleanup",
                    source,
                })??;
            tracing::info!(%summary, "checked for leftovers of an earlier run");
        }
        let handlers = cfg.worker_dir.join("handlers");
        std::fs::create_dir_all(&handlers).map_err(|e| WorkerError::Io {
            path: handlers.clone(),
            source: e,
        })?;
        let listener = TcpListener::bind((cfg.worker_host.as_str(), cfg.worker_port))
            .await
            .map_err(|e| WorkerError::Bind {
                addr: format!("{}:{}", cfg.worker_host, cfg.worker_port),
                source: e,
            })?;
        let addr = listener.local_addr().map_err(|e| WorkerError::Bind {
            addr: format!("{}:{}", cfg.worker_host, cfg.worker_port),
            source: e,
        })?;
        raise_open_files_limit();
        let launcher = Launcher::new(Arc::clone(&cfg), cgroups)?;
        let (registry, functions) = functions(&cfg, remote).await?;
        let manager = Arc::new(Manager::with_registry(Arc::clone(&cfg), launcher, registry));
        {
            let m = Arc::clone(&manager);
            let removed =
                tokio::task::spawn_blocking(move || m.backend().remove_stale_package_staging())
                    .await
                    .unwrap_or(0);
            if removed > 0 {
                tracing::info!(
                    removed,
                    "removed package staging directories of dead workers"
                );
            }
        }
        {
            // The root zygote, before the worker answers: the first cold start can fork.
            let m = Arc::clone(&manager);
            let _ = tokio::task::spawn_blocking(move || m.start_shared()).await;
        }
        let arns = Arns {
            region: cfg.aws_region.clone(),
            account_id: cfg.aws_account_id.clone(),
        };
        let queue = {
            let (cfg, m, arns) = (Arc::clone(&cfg), Arc::clone(&manager), arns.clone());
            tokio::task::spawn_blocking(move || AsyncQueue::open(&cfg, m, arns))
                .await
                .map_err(|source| WorkerError::Task {
                    what: "asynchronous queue recovery",
                    source,
                })??
        };
        let gauge = crate::balance::Gauge::new(
            &crate::balance::worker_id(&cfg.worker_id, &cfg.worker_dir),
            cfg.handler_cache_size,
            Arc::clone(&manager),
        );
        let agent = if cfg.agent_port == 0 {
            None
        } else {
            let at = format!("{}:{}", cfg.worker_host, cfg.agent_port);
            let listener = TcpListener::bind((cfg.worker_host.as_str(), cfg.agent_port))
                .await
                .map_err(|e| WorkerError::Bind {
                    addr: at.clone(),
                    source: e,
                })?;
            Some(listener)
        };
        let state = Arc::new(ApiState {
            gauge: Arc::clone(&gauge),
            manager: Arc::clone(&manager),
            max_body_bytes: cfg.max_body_bytes,
            body_timeout: Duration::from_secs(cfg.body_timeout_s),
            started: Instant::now(),
            cgroup_version: version,
            functions,
            invoke: InvokeContext {
                arns,
                credentials: credentials(&cfg)?,
                queue: Some(Arc::clone(&queue)),
                async_payload_bytes: cfg.async_payload_bytes,
            },
            access_log: cfg.access_log,
        });
        let (stop, stop_rx) = watch::channel(false);
        let dispatch_task = tokio::spawn(Arc::clone(&queue).run(stop_rx.clone()));
        if let Some(listener) = agent {
            tokio::spawn(crate::balance::agent::serve(
                listener,
                Arc::clone(&gauge),
                stop_rx.clone(),
            ));
        }
        let handler = move |req, peer| api::handle(Arc::clone(&state), req, peer);
        let accept_task = tokio::spawn(serve::accept_loop(
            listener,
            handler,
            stop_rx.clone(),
            serve::Limits {
                drain_s: cfg.shutdown_timeout_s,
                max_connections: cfg.max_connections,
            },
        ));
        let reaper_task = tokio::spawn(reaper(
            Arc::clone(&manager),
            reaper_tick(cfg.pause_after_ms),
            stop_rx,
        ));
        tracing::info!(%addr, cgroups = version, worker_dir = %cfg.worker_dir.display(), id = gauge.id(), agent_port = cfg.agent_port, "worker ready");
        Ok(Worker {
            gauge,
            addr,
            cfg,
            manager,
            stop,
            accept_task,
            reaper_task,
            queue,
            dispatch_task,
        })
    }

    /// The bound address of the HTTP API.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts draining: the load agent answers `drain` and `/status` 503, so that a balancer
    /// sends no new calls; calls still arriving are served.
    pub fn start_draining(&self) {
        self.gauge.start_draining();
    }

    /// Drains for `drain_delay_ms` (see [`Worker::start_draining`]), then shuts down.
    pub async fn drain_and_shutdown(self) -> Result<(), WorkerError> {
        let delay = Duration::from_millis(self.cfg.drain_delay_ms);
        self.start_draining();
        if !delay.is_zero() {
            tracing::info!(
                delay_ms = self.cfg.drain_delay_ms,
                "draining before shutdown"
            );
            tokio::time::sleep(delay).await;
        }
        self.shutdown().await
    }

    /// Graceful shutdown: stop accepting requests and taking queued events, drain in-flight
    /// calls and events under the deadline (events not run stay queued), destroy every
    /// sandbox, remove the worker's cgroups and scratch directories.
    pub async fn shutdown(self) -> Result<(), WorkerError> {
        tracing::info!("shutting down");
        let _ = self.stop.send(true);
        let deadline = Duration::from_secs(self.cfg.shutdown_timeout_s.max(1));
        // The accept loop returns once open connections are done or the deadline passed;
        // running events get the same deadline meanwhile.
        let _ = self.dispatch_task.await;
        let ((), _) = tokio::join!(self.queue.shutdown(deadline), self.accept_task);
        let _ = self.reaper_task.await;
        self.manager.shutdown(deadline).await;
        let cfg = Arc::clone(&self.cfg);
        let summary = tokio::task::spawn_blocking(move || {
            let cgroups = CgroupSetup::detect()?;
            cleanup::remove_leftovers(&cfg, &cgroups)
        })
        .await
        .map_err(|source| WorkerError::Task {
            what: "cleanup",
            source,
        })??;
        tracing::info!(%summary, "worker stopped");
        Ok(())
    }
}

/// In registry mode, makes the worker's registry directory its cache of the server
/// (`<worker_dir>/registry-cache`) and returns the server's client; `None` in local mode.
fn registry_mode(cfg: &mut Config) -> Result<Option<Arc<Remote>>, WorkerError> {
    let Some(server) = cfg.registry.server().map(str::to_owned) else {
        return Ok(None);
    };
    if cfg.worker_dir.as_os_str().is_empty() {
        return Err(ConfigError::Invalid("key \"worker_dir\" is not set".to_owned()).into());
    }
    let cache = cfg.worker_dir.join("registry-cache");
    let revalidate = Duration::from_millis(cfg.registry_revalidate_ms.max(1));
    let remote = Remote::new(&server, &cache, revalidate)?;
    cfg.registry_dir = cache;
    Ok(Some(remote))
}

/// The registry the manager looks functions up in, and where management requests go: the
/// registry directory and its store (local mode), or the cache and the server (registry mode).
async fn functions(
    cfg: &Arc<Config>,
    remote: Option<Arc<Remote>>,
) -> Result<(Registry, Functions), WorkerError> {
    if let Some(remote) = remote {
        remote
            .start_revalidating()
            .map_err(|source| WorkerError::Io {
                path: cfg.registry_dir.clone(),
                source,
            })?;
        let (host, port) =
            http_client::split_url(remote.server()).map_err(|source| WorkerError::Io {
                path: cfg.registry_dir.clone(),
                source,
            })?;
        let registry = Registry::cache_of(cfg.registry_dir.clone(), remote);
        return Ok((registry, Functions::Forward { host, port }));
    }
    let dir = cfg.registry_dir.clone();
    let store = tokio::task::spawn_blocking(move || DirStore::open(&dir))
        .await
        .map_err(|source| WorkerError::Task {
            what: "store recovery",
            source,
        })??;
    let credentials = credentials(cfg)?;
    let store = Arc::new(store);
    let api = Arc::new(LambdaApi::new(
        Arc::clone(&store) as Arc<dyn FunctionStore>,
        credentials,
        &cfg.aws_region,
        &cfg.aws_account_id,
        LambdaLimits::defaults(cfg),
    ));
    Ok((
        Registry::new(cfg.registry_dir.clone()),
        Functions::Local { api, store },
    ))
}

/// The cluster's credentials (`credentials_file`), if it has any.
fn credentials(cfg: &Config) -> Result<Option<Credentials>, WorkerError> {
    if cfg.credentials_file.as_os_str().is_empty() {
        Ok(None)
    } else {
        Ok(Some(Credentials::load(&cfg.credentials_file)?))
    }
}

/// Every tick: destroys sandboxes idle past `idle_timeout_s` and pauses those idle past
/// `pause_after_ms`; at the first tick and about every second after: starts the provisioned
/// sandboxes functions lack (`manager/provision.rs`), and evicts an idle one if over the memory
/// budget (cgroup work runs on the blocking pool). A tick is half of `pause_after_ms` (10 ms at least, 250 ms
/// at most), so that an idle sandbox is frozen within 1.5 times `pause_after_ms`.
async fn reaper(manager: Arc<WorkerManager>, period: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Memory is measured about once a second (a cgroup file read per sandbox).
    let per_second = (1000 / period.as_millis().max(1)).max(1) as u64;
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                manager.reap_idle(Instant::now());
                n += 1;
                let measure = n.is_multiple_of(per_second);
                if n == 1 || measure {
                    manager.provision().await;
                }
                let m = Arc::clone(&manager);
                let _ = tokio::task::spawn_blocking(move || {
                    m.pause_idle(Instant::now());
                    if measure {
                        m.enforce_memory_budget();
                    }
                })
                .await;
            }
            _ = stop.changed() => break,
        }
    }
}

/// The reaper's period for `pause_after_ms` (see [`reaper`]).
fn reaper_tick(pause_after_ms: u64) -> Duration {
    Duration::from_millis((pause_after_ms / 2).clamp(10, 250))
}

/// Starts a worker and runs it until SIGTERM or SIGINT, then shuts it down gracefully.
pub async fn run_until_signal(config: Config) -> Result<(), WorkerError> {
    use tokio::signal::unix::{signal, SignalKind};
    let watch = |kind: SignalKind, name: &'static str| {
        signal(kind).map_err(|source| WorkerError::Signal { name, source })
    };
    let mut term = watch(SignalKind::terminate(), "SIGTERM")?;
    let mut int = watch(SignalKind::interrupt(), "SIGINT")?;
    let worker = Worker::start(config).await?;
    crate::systemd::ready(worker.local_addr());
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    crate::systemd::stopping();
    worker.drain_and_shutdown().await
}

/// Raises the soft limit of open files to the hard limit: every connection, sandbox and zygote
/// holds descriptors, and the usual soft limit (1024) is below `max_connections` plus them.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(soft, hard, error = %e, "cannot raise the open-files limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-files limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::reaper_tick;
    use std::time::Duration;

    #[test]
    fn the_reaper_ticks_at_half_the_pause_delay_within_bounds() {
        assert_eq!(reaper_tick(100), Duration::from_millis(50));
        assert_eq!(reaper_tick(0), Duration::from_millis(10));
        assert_eq!(reaper_tick(1000), Duration::from_millis(250));
        assert_eq!(reaper_tick(60_000), Duration::from_millis(250));
    }
}
