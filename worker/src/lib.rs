//! The lambdaworker daemon as a library: configuration, HTTP API, lambda manager and sandbox pool.
//!
//! The `worker` binary and `admin worker-exec` are thin wrappers around [`run_until_signal`];
//! tests start a [`Worker`] in-process on a temporary cluster.
//!
//! Path of a request: [`api::route`] parses it into an action; [`manager::Manager::run`] resolves
//! the lambda once (the [`registry`] entry and its limits), takes a warm sandbox or has the
//! backend ([`launch`]: the `sandbox` crate and the import cache, [`zygote`]) start one, and
//! exchanges one frame with the in-sandbox runtime ([`runtime_client`]); errors map to HTTP
//! responses in [`error::ApiError::into_response`].

pub mod api;
pub mod archive;
pub mod argv;
pub mod aws;
pub mod balance;
pub mod bases;
pub mod bundle;
pub mod cleanup;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod files;
pub mod functions;
pub mod gpu;
pub mod http_client;
pub mod http_function;
pub mod identity;
pub mod invocations;
pub mod invoke;
pub mod lambda_config;
pub mod launch;
pub mod logging;
pub mod logs;
pub mod management;
pub mod manager;
pub mod metrics;
pub mod name;
pub mod packages;
pub mod preflight;
pub mod registry;
pub mod registry_server;
pub mod rotation;
pub mod runtime_client;
pub mod serve;
mod server;
pub mod systemd;
pub mod timings;
pub mod volumes;
pub mod zygote;

use std::path::PathBuf;

pub use cleanup::cleanup_leftovers;
pub use server::{run_until_signal, Worker};

/// The worker's manager: the manager's policy over the real backend.
pub type WorkerManager = manager::Manager<launch::Launcher>;

/// Error starting, running or cleaning up a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("cgroups: {0}")]
    Cgroup(#[from] sandbox::cgroup::CgroupError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Harden(#[from] sandbox::HardenError),
    #[error("{0}")]
    Launcher(#[from] launch::LauncherError),
    #[error("{what} task failed: {source}")]
    Task {
        what: &'static str,
        source: tokio::task::JoinError,
    },
    #[error("{0}")]
    Store(#[from] functions::StoreError),
    #[error("{0}")]
    Credentials(#[from] aws::CredentialsError),
    #[error("{0}")]
    Remote(#[from] registry::RemoteError),
    #[error("asynchronous queue: {0}")]
    Queue(#[from] invoke::AsyncQueueError),
    #[error("cannot watch {name}: {source}")]
    Signal {
        name: &'static str,
        source: std::io::Error,
    },
}

/// Lower-case hex of `bytes` (digests in names, BPF programs in the environment).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Initializes tracing (text, to stderr) once per process with the given filter; later calls
/// are no-ops. A worker started from its config uses [`logging::init`] instead.
pub fn init_tracing(filter: &str) {
    logging::init_stderr(filter);
}
