//! The worker's lifecycle: start (clean leftovers, bind, serve), graceful shutdown.
//!
//! Start, in order: validate the config, detect cgroups, remove what a crashed run left behind,
//! create the scratch root, bind the HTTP port, raise the open-files limit, make the manager over
//! the launcher, remove package staging directories of dead workers, start the root zygote,
//! serve (at most `max_connections` connections; one more gets a 503 and is closed) with the
//! reaper beside. Shutdown: stop accepting, let in-flight requests finish under
//! `shutdown_timeout_s`, shut the manager down (`manager/shutdown.rs`), remove the worker's
//! cgroups and scratch directories.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sandbox::cgroup::{CgroupSetup, CgroupVersion};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::api::{self, ApiState};
use crate::cleanup;
use crate::config::Config;
use crate::error::ApiError;
use crate::launch::Launcher;
use crate::manager::{Backend, Manager, Unavailable};
use crate::{WorkerError, WorkerManager};

/// Connections beyond `max_connections` that may be answered (503) at once; more are closed
/// without an answer.
const MAX_REFUSALS: usize = 64;
/// How long a refused connection may take to send its request and read the answer.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// A running worker (HTTP API bound, ready to serve).
#[derive(Debug)]
pub struct Worker {
    addr: SocketAddr,
    cfg: Arc<Config>,
    manager: Arc<WorkerManager>,
    stop: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
    reaper_task: JoinHandle<()>,
}

impl Worker {
    /// Cleans what a crashed run left behind, binds the HTTP API and starts serving.
    pub async fn start(config: Config) -> Result<Worker, WorkerError> {
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
        let manager = Arc::new(Manager::new(Arc::clone(&cfg), launcher));
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
        let state = Arc::new(ApiState {
            manager: Arc::clone(&manager),
            max_body_bytes: cfg.max_body_bytes,
            body_timeout: Duration::from_secs(cfg.body_timeout_s),
            started: Instant::now(),
            cgroup_version: version,
        });
        let (stop, stop_rx) = watch::channel(false);
        let accept_task = tokio::spawn(accept_loop(
            listener,
            state,
            stop_rx.clone(),
            Limits {
                drain_s: cfg.shutdown_timeout_s,
                max_connections: cfg.max_connections,
            },
        ));
        let reaper_task = tokio::spawn(reaper(Arc::clone(&manager), stop_rx));
        tracing::info!(%addr, cgroups = version, worker_dir = %cfg.worker_dir.display(), "worker ready");
        Ok(Worker {
            addr,
            cfg,
            manager,
            stop,
            accept_task,
            reaper_task,
        })
    }

    /// The bound address of the HTTP API.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Graceful shutdown: stop accepting, drain in-flight calls under the deadline, destroy every
    /// sandbox, remove the worker's cgroups and scratch directories.
    pub async fn shutdown(self) -> Result<(), WorkerError> {
        tracing::info!("shutting down");
        let _ = self.stop.send(true);
        // The accept loop returns once open connections are done or the deadline passed.
        let _ = self.accept_task.await;
        let _ = self.reaper_task.await;
        let deadline = Duration::from_secs(self.cfg.shutdown_timeout_s.max(1));
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

/// The accept loop's bounds.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Seconds open connections get to finish at shutdown.
    drain_s: u64,
    max_connections: usize,
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<ApiState>,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
) {
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
                let state = Arc::clone(&state);
                let svc = service_fn(move |req| api::handle(Arc::clone(&state), req));
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

/// Every 250 ms: destroys sandboxes idle past `idle_timeout_s` and pauses those idle past
/// `pause_after_ms`; every second: evicts an idle one if over the memory budget (cgroup work
/// runs on the blocking pool).
async fn reaper(manager: Arc<WorkerManager>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                manager.reap_idle(Instant::now());
                n += 1;
                // Memory is measured once a second (a cgroup file read per sandbox).
                let measure = n % 4 == 0;
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

/// Starts a worker and runs it until SIGTERM or SIGINT, then shuts it down gracefully.
pub async fn run_until_signal(config: Config) -> Result<(), WorkerError> {
    use tokio::signal::unix::{signal, SignalKind};
    let watch = |kind: SignalKind, name: &'static str| {
        signal(kind).map_err(|source| WorkerError::Signal { name, source })
    };
    let mut term = watch(SignalKind::terminate(), "SIGTERM")?;
    let mut int = watch(SignalKind::interrupt(), "SIGINT")?;
    let worker = Worker::start(config).await?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    worker.shutdown().await
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
