//! The contract between the manager's policy and the machinery that makes sandboxes.
//!
//! The manager decides (gates, pools, capacity, eviction, the memory budget, pausing); a
//! [`Backend`] acts: it installs packages, starts a sandbox and connects to its runtime, and
//! measures or kills what it started. The worker's backend is [`crate::launch::Launcher`] (the
//! `sandbox` crate and the import cache); the manager's unit tests use a fake that needs no root,
//! so every policy decision is tested without the kernel, and the kernel mechanics are tested by
//! the integration tests.
//!
//! Every method may block (cgroupfs, clone, pip): the manager calls them on the blocking pool,
//! except where a method says it is cheap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::lambda_config::{Entry, EntryType, LambdaLimits};
use crate::name::LambdaName;
use crate::packages::{PackageError, PackageStats};
use crate::registry::Handler;
use crate::zygote::ImportCacheStats;

/// A call's lambda, resolved once (by `resolve.rs`): its name, its registry entry (directory
/// and handler version), its limits and how its sandboxes run it.
#[derive(Debug, Clone)]
pub struct LambdaRef {
    pub name: LambdaName,
    pub handler: Handler,
    pub limits: LambdaLimits,
    /// Fixed for one handler version, like the limits.
    pub setup: Arc<FunctionSetup>,
}

/// What a sandbox of a function needs besides its code and limits: the entry to call, the
/// environment `lambda.json` sets, and its layers, resolved to directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionSetup {
    pub entry: Entry,
    /// What the entry is (`LAMBDA_ENTRY_TYPE` in the sandbox).
    pub entry_type: EntryType,
    /// The `environment` key.
    pub environment: BTreeMap<String, String>,
    /// The `layers` key, in its order.
    pub layers: Vec<LayerDir>,
    /// The `volumes` key, each access point with its volume's root on the host.
    pub volumes: Vec<VolumeMount>,
    /// With `enable_gpu`: the GPUs' nodes, device rules and driver files its sandboxes get.
    pub gpu: Option<crate::gpu::GpuMounts>,
    /// The custom base its sandboxes run on (`None`: the cluster's default).
    pub base: Option<crate::bases::BaseRef>,
}

/// One access point a function mounts, with the root directory of its volume on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    pub point: crate::lambda_config::AccessPoint,
    /// `<volumes_dir>/<volume>/data` (mounted, for a size-limited volume).
    pub data: PathBuf,
}

/// Where the sandbox sees layers: `<LAYERS_DIR>/<name>`.
pub const LAYERS_DIR: &str = "/opt";

/// One layer version a function uses, as the sandbox mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDir {
    pub name: LambdaName,
    pub version: u64,
    /// Its unpacked files on the host (`<registry>/.store/layers/<name>/<version>`).
    pub host: PathBuf,
    /// Whether it has a `python/` directory (AWS's layout), which then is what goes on
    /// `sys.path` instead of the layer's top.
    pub python: bool,
}

impl LayerDir {
    /// Where the sandbox sees it: `/opt/<name>`.
    pub fn mount_point(&self) -> String {
        format!("{LAYERS_DIR}/{}", self.name)
    }

    /// Its `sys.path` entry in the sandbox.
    pub fn sys_path(&self) -> String {
        if self.python {
            format!("{}/python", self.mount_point())
        } else {
            self.mount_point()
        }
    }
}

/// One installed package a sandbox sees: its host directory and its place under `/packages`
/// (`name/version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageDir {
    pub host: PathBuf,
    pub rel: PathBuf,
}

/// Everything a cold start needs, in one value.
#[derive(Debug)]
pub struct StartRequest<'a> {
    /// The sandbox's id in the worker (its cgroup is `sb-<id>`, its scratch directory
    /// `handlers/<name>/<id>`).
    pub id: u64,
    pub lambda: &'a LambdaRef,
    pub packages: &'a [PackageDir],
}

/// Where a start's time went, for the `spawn.*` phases of `/stats`.
#[derive(Debug, Clone, Copy)]
pub enum StartSteps {
    /// Forked from a zygote: cgroup, detached mounts, the request and the child's report.
    Forked(Duration),
    /// A fresh interpreter: the sandbox crate's own timings.
    Fresh(sandbox::StartTimings),
}

/// A started sandbox, connected to its runtime.
#[derive(Debug)]
pub struct Started<S> {
    pub sandbox: S,
    /// Connected and non-blocking; the first request may be written at once (the connection
    /// waits in the socket's backlog until the runtime accepts it).
    pub conn: std::os::unix::net::UnixStream,
    /// The read end of the pipe the sandbox's stdout and stderr both write to (the backend
    /// keeps no copy of the write end); the manager reads it for the function's log.
    pub output: std::os::fd::OwnedFd,
    pub steps: StartSteps,
}

/// Why a sandbox could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    HandlerDir(#[from] crate::registry::RegistryError),
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot clone the handler directory: {0}")]
    HandlerMount(#[from] sandbox::DetachError),
    #[error("invalid sandbox spec: {0}")]
    Spec(#[from] sandbox::SpecError),
    #[error("cannot start: {0}")]
    Spawn(#[from] sandbox::SandboxError),
    #[error("{0}")]
    Fork(#[from] crate::zygote::ForkError),
    #[error("cannot register the connection to the sandbox: {0}")]
    Register(#[source] std::io::Error),
    #[error("cannot create the pipe for the sandbox's output: {0}")]
    OutputPipe(#[source] nix::errno::Errno),
    #[error("cannot register the sandbox's output pipe: {0}")]
    RegisterOutput(#[source] std::io::Error),
    #[error("{0}")]
    Identity(#[from] crate::identity::IdentityError),
    #[error("{0}")]
    Volume(#[from] crate::volumes::AccessError),
    #[error("volume {volume}: {source}")]
    VolumeMap {
        volume: String,
        source: sandbox::MappingError,
    },
    #[error("volume {volume}: {source} (id-mapped mounts need Linux 5.12 and a file system that supports them, such as ext4, xfs, btrfs or tmpfs)")]
    VolumeMount {
        volume: String,
        source: sandbox::DetachError,
    },
}

/// Work to do off the request's path once a sandbox has answered its first call.
pub type AfterFirstCall = Box<dyn FnOnce() + Send + 'static>;

/// What makes, measures and kills sandboxes (see the module docs).
pub trait Backend: Send + Sync + 'static {
    type Sandbox: SandboxHandle;

    /// Makes sure the lambda's packages are installed (pip, possibly for minutes); their
    /// directories. Called only for a lambda with a requirement file.
    fn packages(&self, lambda: &LambdaRef) -> Result<Vec<PackageDir>, PackageError>;

    /// Starts one sandbox for the request.
    fn start(&self, req: &StartRequest<'_>) -> Result<Started<Self::Sandbox>, StartError>;

    /// Work to run on the blocking pool after the sandbox's first call, if any (the real
    /// backend: the zygote it was forked from prepares its next spare). Cheap.
    fn after_first_call(&self, sandbox: &Self::Sandbox) -> Option<AfterFirstCall>;

    /// Memory charged to a sandbox's cgroup (as [`SandboxHandle::cgroup`] names it), in bytes;
    /// 0 when it cannot be read.
    fn memory_of(&self, cgroup: &Path) -> u64;

    /// What reads a sandbox cgroup's peak memory (for the REPORT lines; called on the log
    /// writer's thread or the blocking pool). Cheap; called once.
    fn peak_reader(&self) -> crate::logs::PeakReader;

    /// Kills every process in a sandbox's cgroup (shutdown, for calls past the deadline).
    fn kill(&self, cgroup: &Path);

    /// Memory used outside the sandboxes by what they share (the zygotes), in bytes.
    fn shared_memory(&self) -> u64;

    /// Gives back shared memory when no idle sandbox is left to evict (the real backend
    /// retires its least recently used leaf zygote); whether it did.
    fn reclaim_shared(&self) -> bool;

    /// Starts what sandboxes share (the root zygote); failures are logged and retried later.
    fn start_shared(&self);

    /// No more shared state for new sandboxes (shutdown); what exists ends with its last user.
    fn close(&self);

    /// Whether anything shared is still alive or being destroyed.
    fn shared_alive(&self) -> bool;

    /// Removes what package installs of dead workers left; how many.
    fn remove_stale_package_staging(&self) -> usize;

    fn import_cache_stats(&self) -> ImportCacheStats;

    /// Whether sandboxes get user namespaces, and the uid range.
    fn user_namespace_stats(&self) -> crate::identity::UserNsStats;

    fn package_stats(&self) -> PackageStats;
}

/// One sandbox the manager holds.
pub trait SandboxHandle: Send + 'static {
    /// Its first process, as the worker sees it. Cheap.
    fn pid(&self) -> i32;
    /// Its cgroup, relative to each hierarchy's root. Cheap.
    fn cgroup(&self) -> &Path;
    /// Whether it was forked from a zygote. Cheap.
    fn forked(&self) -> bool;
    /// Whether its first process still runs (no blocking read: a `waitpid`/pidfd check).
    fn is_alive(&mut self) -> bool;
    /// Freezes (`true`) or thaws (`false`) it.
    fn set_paused(&mut self, paused: bool) -> Result<(), sandbox::SandboxError>;
    /// How many times the OOM killer ended a process in it.
    fn oom_kills(&self) -> u64;
    /// Sends its processes `SIGKILL` (thawing it first if paused): from here on it runs
    /// nothing, and its capacity can go to a new sandbox while [`SandboxHandle::destroy`] waits
    /// for them and removes the rest. Logs failures; `destroy` kills in any case.
    fn kill(&mut self) {}
    /// Destroys it and what the backend made for it (scratch directory); logs failures.
    fn destroy(self);
}
