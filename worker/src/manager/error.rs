//! Why a call of a lambda failed, as the manager knows it. `crate::error` maps each case to an
//! HTTP status and body, in one place.

use crate::lambda_config::LambdaConfigError;
use crate::manager::backend::StartError;
use crate::packages::PackageError;
use crate::registry::RegistryError;
use crate::runtime_client::WireError;

/// Everything [`super::Manager::run`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("lambda {lambda} has an invalid {}: {source}", source.path.display())]
    LambdaConfig {
        lambda: String,
        source: LambdaConfigError,
    },
    #[error(transparent)]
    Packages(#[from] PackageError),
    #[error(
        "lambda {lambda} has {max_concurrency} calls running and {queued} waiting: try again later"
    )]
    TooManyRequests {
        lambda: String,
        max_concurrency: usize,
        queued: usize,
    },
    /// The runtime refused the event (it could not parse it).
    #[error("request body is not valid JSON: {message}")]
    EventRefused { message: String },
    #[error("handler of {lambda} raised {kind}: {message}")]
    HandlerRaised {
        lambda: String,
        kind: String,
        message: String,
        traceback: String,
    },
    #[error("sandbox of {lambda} failed: sandbox {id}: {source}")]
    StartFailed {
        lambda: String,
        id: u64,
        source: StartError,
    },
    #[error(
        "sandbox of {lambda} failed: {source} (sandbox {id} pid {pid}){}",
        stderr_note(stderr)
    )]
    SandboxFailed {
        lambda: String,
        id: u64,
        pid: i32,
        source: WireError,
        /// The end of the sandbox's output (its stdout and stderr: one pipe), kept by the
        /// manager from the pipe it reads.
        stderr: String,
    },
    #[error("the sandbox of {lambda} ran out of memory (memory_mb {memory_mb}) and was killed")]
    OutOfMemory { lambda: String, memory_mb: u64 },
    #[error("lambda {lambda} timed out after {timeout_s} s")]
    Timeout { lambda: String, timeout_s: u64 },
    #[error("worker unavailable: {reason}")]
    Unavailable { reason: Unavailable },
    #[error("internal error: {what} task failed: {source}")]
    Task {
        what: &'static str,
        source: tokio::task::JoinError,
    },
}

/// Why the worker cannot take a call now (HTTP 503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("the worker is shutting down")]
    ShuttingDown,
    #[error("the worker is draining: it finishes its calls and takes no new ones from a balancer")]
    Draining,
    #[error("all {handler_cache_size} sandboxes are busy (handler_cache_size)")]
    Full { handler_cache_size: usize },
    #[error("the worker has {max_connections} connections open (max_connections)")]
    TooManyConnections { max_connections: usize },
    #[error("all {gpu_sandboxes} GPU sandboxes are busy (gpu_sandboxes)")]
    GpuBusy { gpu_sandboxes: usize },
}

fn stderr_note(stderr: &str) -> String {
    let tail = stderr.trim();
    if tail.is_empty() {
        String::new()
    } else {
        format!("; stderr: {tail}")
    }
}

impl RunError {
    pub(crate) fn shutting_down() -> Self {
        RunError::Unavailable {
            reason: Unavailable::ShuttingDown,
        }
    }
}
