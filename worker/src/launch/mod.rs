//! The worker's [`Backend`]: handler sandboxes made with the `sandbox` crate, forked from a
//! zygote of the import cache when it can, else started fresh; packages installed with pip.
//!
//! A start ([`Launcher::start`]), in order:
//! 1. open the lambda's directory `O_PATH|O_NOFOLLOW|O_DIRECTORY` (never a link), held until
//!    the sandbox has mounted it;
//! 2. the lambda's identity: with user namespaces, its slot of the uid range (given on its
//!    first cold start, [`crate::identity`]), the user it runs as inside and the maps of its
//!    namespace; without, `sandbox_uid`;
//! 3. the scratch directory `handlers/<name>/<id>/`, a `host_mb` tmpfs owned by that user on
//!    the host (the sandbox's `/host`);
//! 4. the output pipe (`pipe2(O_CLOEXEC)`): its write end becomes the sandbox's stdout and
//!    stderr, its read end goes to the manager with the sandbox (the function's log);
//! 5. bind `<scratch>/server_pipe` and connect to it at once (the connection waits in the
//!    backlog until the runtime accepts it);
//! 6. with the import cache on, a fork of the best zygote ([`crate::zygote`]); otherwise, or if
//!    that fork fails, a fresh sandbox ([`spawn_fresh`]) with the listening socket as fd 3.
//!
//! Both kinds of sandbox get the same environment ([`sandbox_env`]) and the same mounts: the
//! function's directory at `/handler`, its packages under `/packages`, its layers read-only at
//! `/opt/<name>`, its volumes' access points under `/mnt` (opened, made on first use and
//! cloned id-mapped right after step 2, [`VolumeMapper`]). A failed start removes its scratch
//! directory again.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use nix::fcntl::OFlag;
use sandbox::cgroup::CgroupSetup;
use sandbox::{Output, Sandbox, SandboxSpec};

use crate::config::Config;
use crate::identity::HostIds;
use crate::lambda_config::LambdaLimits;
use crate::manager::backend::{AfterFirstCall, StartSteps};
use crate::manager::{
    Backend, LambdaRef, LayerDir, PackageDir, SandboxHandle, StartError, StartRequest, Started,
    LAYERS_DIR,
};
use crate::name::LambdaName;
use crate::packages::{PackageError, PackageStats, Packages};
use crate::runtime_client;
use crate::zygote::{ImportCache, ImportCacheStats, Zygote};

mod env;
mod volumes;
pub use env::sandbox_env;
pub use volumes::VolumeMapper;

/// Path of the runtime inside the base filesystem.
pub const RUNTIME_PATH: &str = "/usr/local/lib/lambdaworker/runtime.py";
/// Modules the runtime offers code written for other platforms (`luna_lambda_tools`), last on
/// a function's `sys.path`.
pub const COMPAT_DIR: &str = "/usr/local/lib/lambdaworker/compat";
const PYTHON: &str = "/usr/bin/python3";

/// Why a launcher cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum LauncherError {
    #[error("{0}")]
    Harden(#[from] sandbox::HardenError),
    #[error("the base's runtime {} {found}, but this worker speaks call protocol {}: make the cluster again with this version's admin (admin new)", path.display(), runtime_client::CALL_PROTOCOL)]
    Runtime { path: PathBuf, found: String },
}

/// The worker's backend (see the module docs).
pub struct Launcher {
    cfg: Arc<Config>,
    cgroups: CgroupSetup,
    cgroup_parent: PathBuf,
    handlers_dir: PathBuf,
    /// What every handler sandbox gives up before it runs handler code (its ids are
    /// `sandbox_uid`'s; with user namespaces each lambda's replace them).
    hardening: sandbox::Hardening,
    /// The uid range, when sandboxes get user namespaces.
    ids: Option<Arc<HostIds>>,
    /// Why they do not, when they do not.
    fallback: Option<String>,
    packages: Packages,
    import_cache: Arc<ImportCache>,
    volumes: VolumeMapper,
}

impl std::fmt::Debug for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launcher")
            .field("handlers_dir", &self.handlers_dir)
            .finish_non_exhaustive()
    }
}

impl Launcher {
    /// A launcher for `cfg`: sandboxes under the worker's cgroup parent, scratch directories
    /// under `<worker_dir>/handlers`.
    pub fn new(cfg: Arc<Config>, cgroups: CgroupSetup) -> Result<Self, LauncherError> {
        check_runtime(&cfg.base_dir)?;
        let hardening = sandbox::Hardening::new(cfg.sandbox_uid, cfg.sandbox_gid)?;
        let (ids, fallback) = match HostIds::for_config(&cfg) {
            Ok(ids) => (Some(Arc::new(ids)), None),
            Err(why) => (None, Some(why.to_string())),
        };
        let packages = Packages::new(
            Arc::clone(&cfg),
            cgroups.clone(),
            hardening.clone(),
            ids.clone(),
        );
        let import_cache = Arc::new(ImportCache::new(
            Arc::clone(&cfg),
            cgroups.clone(),
            &hardening,
            ids.clone(),
        ));
        Ok(Self {
            ids,
            fallback,
            cgroup_parent: cfg.cgroup_parent(),
            handlers_dir: cfg.worker_dir.join("handlers"),
            hardening,
            packages,
            import_cache,
            volumes: VolumeMapper::default(),
            cgroups,
            cfg,
        })
    }

    /// Step 2: who lambda `name`'s sandboxes run as. Blocking (the uid table).
    fn identity(&self, name: &LambdaName) -> Result<Identity, StartError> {
        let Some(ids) = &self.ids else {
            let hardening = self.hardening.clone();
            let host = (hardening.uid, hardening.gid);
            return Ok(Identity {
                hardening,
                user_ns: None,
                host,
            });
        };
        let slot = ids.lambda_slot(name.as_str())?;
        let mut hardening = self.hardening.clone();
        (hardening.uid, hardening.gid) = (slot, slot);
        let host = ids.host_id(slot);
        Ok(Identity {
            hardening,
            user_ns: Some(ids.sandbox_map(slot)?),
            host: (host, host),
        })
    }

    /// Steps 2-6 with the lambda's directory open as `handler_dir` (`/proc/self/fd/N`).
    fn start_in(
        &self,
        req: &StartRequest<'_>,
        handler_dir: &Path,
    ) -> Result<Started<LaunchedSandbox>, StartError> {
        let name = &req.lambda.name;
        let t0 = Instant::now();
        let Identity {
            hardening,
            user_ns,
            host: (uid, gid),
        } = self.identity(name)?;
        // The access points, opened (made on first use) and cloned before anything needs
        // undoing.
        let volumes = self.volumes.mounts(&req.lambda.setup.volumes, (uid, gid))?;
        let identified = t0.elapsed();
        let scratch = self
            .handlers_dir
            .join(name.as_str())
            .join(req.id.to_string());
        std::fs::create_dir_all(&scratch).map_err(|source| StartError::Io {
            what: "create",
            path: scratch.clone(),
            source,
        })?;
        // A bounded tmpfs, owned by the sandbox user on the host: its /host.
        if let Err(e) = crate::cleanup::mount_scratch(&scratch, self.cfg.host_mb, uid, gid) {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(StartError::Io {
                what: "mount the scratch tmpfs on",
                path: scratch,
                source: e.into(),
            });
        }
        let scratch_ready = t0.elapsed();
        // 4. The output pipe; the sandbox gets the only write ends once ours is closed below.
        let (output, output_write) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
            Ok(pipe) => pipe,
            Err(errno) => {
                let _ = crate::cleanup::remove_scratch(&scratch);
                return Err(StartError::OutputPipe(errno));
            }
        };
        let env = sandbox_env(
            &self.cfg,
            name,
            &req.lambda.limits,
            &req.lambda.setup,
            req.packages,
        );
        let fresh = FreshSandbox {
            cgroup: self.cgroup_parent.join(format!("sb-{}", req.id)),
            name,
            handler_dir,
            scratch: &scratch,
            packages: req.packages,
            layers: &req.lambda.setup.layers,
            volumes: &volumes,
            gpu: req.lambda.setup.gpu.as_ref(),
            base: req.lambda.setup.base.as_ref(),
            env: &env,
            limits: &req.lambda.limits,
            hardening: &hardening,
            user_ns: user_ns.as_ref(),
            output: output_write.as_fd(),
        };
        let prepared = t0.elapsed();
        let result = self.fork_or_spawn(req.id, &fresh);
        drop(output_write);
        tracing::debug!(
            lambda = %name,
            sandbox = req.id,
            identity_ms = identified.as_secs_f64() * 1e3,
            scratch_ms = (scratch_ready - identified).as_secs_f64() * 1e3,
            pipe_env_ms = (prepared - scratch_ready).as_secs_f64() * 1e3,
            start_ms = (t0.elapsed() - prepared).as_secs_f64() * 1e3,
            "sandbox start steps"
        );
        match result {
            Ok(launched) => Ok(Started {
                sandbox: LaunchedSandbox {
                    id: req.id,
                    sandbox: launched.sandbox,
                    scratch,
                    zygote: launched.zygote,
                },
                conn: launched.conn,
                output,
                steps: launched.steps,
            }),
            Err(e) => {
                let _ = crate::cleanup::remove_scratch(&scratch);
                Err(e)
            }
        }
    }

    /// Step 6: a fork from a zygote when the import cache offers one, else a fresh sandbox.
    fn fork_or_spawn(&self, id: u64, fresh: &FreshSandbox<'_>) -> Result<Launched, StartError> {
        // A GPU sandbox starts fresh: a zygote's /dev and cgroup have no GPU in them. One on a
        // custom base forks from that base's zygotes.
        if self.import_cache.enabled() && fresh.gpu.is_none() {
            match self.fork_from_zygote(fresh) {
                Ok(Some(launched)) => return Ok(launched),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(lambda = %fresh.name, sandbox = id, error = %e, "fork from a zygote failed; starting a fresh sandbox");
                    let _ = std::fs::remove_file(fresh.scratch.join("server_pipe"));
                }
            }
        }
        let (sandbox, conn) = spawn_fresh(&self.cfg, &self.cgroups, fresh)?;
        Ok(Launched {
            steps: StartSteps::Fresh(sandbox.start_timings()),
            sandbox,
            conn,
            zygote: None,
        })
    }

    /// A handler sandbox forked from the import cache, connected like a fresh one; `None` when
    /// the cache has no zygote to offer.
    fn fork_from_zygote(&self, fresh: &FreshSandbox<'_>) -> Result<Option<Launched>, StartError> {
        let t = Instant::now();
        let (listener, conn) = listen_and_connect(fresh.scratch)?;
        let packages: Vec<(PathBuf, PathBuf)> = fresh
            .packages
            .iter()
            .map(|p| (p.host.clone(), p.rel.clone()))
            .collect();
        let layers: Vec<(PathBuf, String)> = fresh
            .layers
            .iter()
            .map(|l| (l.host.clone(), l.name.to_string()))
            .collect();
        let volumes: Vec<(String, BorrowedFd<'_>)> = fresh
            .volumes
            .iter()
            .map(|(m, rel)| (rel.display().to_string(), m.as_fd()))
            .collect();
        let req = crate::zygote::HandlerRequest {
            handler_dir: fresh.handler_dir,
            scratch: fresh.scratch,
            packages: &packages,
            layers: &layers,
            volumes: &volumes,
            listen: listener.as_fd(),
            output: fresh.output,
            env: fresh.env,
            limits: fresh.limits,
            hardening: fresh.hardening,
            base: fresh.base,
        };
        let forked = self.import_cache.fork_handler(&req)?;
        drop(listener);
        let Some(forked) = forked else {
            let _ = std::fs::remove_file(fresh.scratch.join("server_pipe"));
            return Ok(None);
        };
        Ok(Some(Launched {
            sandbox: forked.sandbox,
            conn,
            zygote: Some(forked.zygote),
            steps: StartSteps::Forked(t.elapsed()),
        }))
    }
}

/// Who a lambda's sandboxes run as (step 2).
struct Identity {
    /// What they give up, with the ids of their user inside.
    hardening: sandbox::Hardening,
    /// The maps of their user namespace, when they get one.
    user_ns: Option<sandbox::IdMap>,
    /// Their user's uid and gid on the host.
    host: (u32, u32),
}

/// What step 6 made.
struct Launched {
    sandbox: Sandbox,
    conn: UnixStream,
    /// The zygote it was forked from, if it was.
    zygote: Option<Arc<Zygote>>,
    steps: StartSteps,
}

impl Backend for Launcher {
    type Sandbox = LaunchedSandbox;

    fn packages(&self, lambda: &LambdaRef) -> Result<Vec<PackageDir>, PackageError> {
        let list = self.packages.ensure(&lambda.name, &lambda.handler.dir)?;
        Ok(list
            .iter()
            .map(|p| PackageDir {
                host: self.packages.path_of(p),
                rel: p.rel(),
            })
            .collect())
    }

    fn start(&self, req: &StartRequest<'_>) -> Result<Started<LaunchedSandbox>, StartError> {
        // 1. The lambda's directory (never a link), held open until the sandbox has mounted it.
        let (dir_fd, same) = req.lambda.handler.open_dir()?;
        if !same {
            tracing::debug!(lambda = %req.lambda.name, "the lambda's directory was replaced since its lookup; the next call retires this sandbox");
        }
        let handler_dir = PathBuf::from(format!("/proc/self/fd/{}", dir_fd.as_raw_fd()));
        let started = self.start_in(req, &handler_dir);
        drop(dir_fd);
        started
    }

    fn after_first_call(&self, sandbox: &LaunchedSandbox) -> Option<AfterFirstCall> {
        // The zygote's next spare, now that this first call no longer competes with it.
        let zygote = Arc::clone(sandbox.zygote.as_ref()?);
        let cache = Arc::clone(&self.import_cache);
        Some(Box::new(move || cache.refill(&zygote)))
    }

    fn memory_of(&self, cgroup: &Path) -> u64 {
        self.cgroups.cgroup(cgroup).memory_usage().unwrap_or(0)
    }

    fn peak_reader(&self) -> crate::logs::PeakReader {
        let cgroups = self.cgroups.clone();
        Arc::new(move |cgroup: &Path| cgroups.cgroup(cgroup).memory_peak().ok())
    }

    fn kill(&self, cgroup: &Path) {
        if let Err(e) = self.cgroups.cgroup(cgroup).kill_all() {
            tracing::debug!(cgroup = %cgroup.display(), error = %e, "kill at shutdown");
        }
    }

    fn shared_memory(&self) -> u64 {
        self.import_cache.memory_in_use()
    }

    fn reclaim_shared(&self) -> bool {
        self.import_cache.retire_lru(None).is_some()
    }

    fn start_shared(&self) {
        if let Err(e) = self.import_cache.start() {
            tracing::warn!(error = %e, "import cache: no root zygote yet");
        }
    }

    fn close(&self) {
        self.import_cache.close();
    }

    fn shared_alive(&self) -> bool {
        self.import_cache.any_alive()
    }

    fn remove_stale_package_staging(&self) -> usize {
        self.packages.remove_stale_staging()
    }

    fn user_namespace_stats(&self) -> crate::identity::UserNsStats {
        match &self.ids {
            Some(ids) => ids.stats(),
            None => crate::identity::UserNsStats {
                fallback: self.fallback.clone(),
                ..Default::default()
            },
        }
    }

    fn import_cache_stats(&self) -> ImportCacheStats {
        self.import_cache.stats()
    }

    fn package_stats(&self) -> PackageStats {
        self.packages.stats()
    }
}

/// A handler sandbox of the worker: the sandbox, its scratch directory, and the zygote it was
/// forked from (which must outlive it).
#[derive(Debug)]
pub struct LaunchedSandbox {
    id: u64,
    sandbox: Sandbox,
    scratch: PathBuf,
    zygote: Option<Arc<Zygote>>,
}

impl SandboxHandle for LaunchedSandbox {
    fn pid(&self) -> i32 {
        self.sandbox.pid()
    }

    fn cgroup(&self) -> &Path {
        self.sandbox.cgroup_path()
    }

    fn forked(&self) -> bool {
        self.zygote.is_some()
    }

    fn is_alive(&mut self) -> bool {
        self.sandbox.is_alive()
    }

    fn set_paused(&mut self, paused: bool) -> Result<(), sandbox::SandboxError> {
        if paused {
            self.sandbox.pause()
        } else {
            self.sandbox.unpause()
        }
    }

    fn oom_kills(&self) -> u64 {
        self.sandbox.oom_kills()
    }

    fn kill(&mut self) {
        if let Err(e) = self.sandbox.kill() {
            tracing::warn!(sandbox = self.id, error = %e, "cannot kill sandbox");
        }
    }

    fn destroy(mut self) {
        let id = self.id;
        let t0 = Instant::now();
        if let Err(e) = self.sandbox.destroy() {
            tracing::error!(sandbox = id, error = %e, "cannot destroy sandbox");
        }
        let killed = t0.elapsed();
        if let Err(e) = crate::cleanup::remove_scratch(&self.scratch) {
            tracing::warn!(sandbox = id, path = %self.scratch.display(), error = %e, "cannot remove scratch directory");
        }
        tracing::debug!(
            sandbox = id,
            sandbox_ms = killed.as_secs_f64() * 1e3,
            scratch_ms = (t0.elapsed() - killed).as_secs_f64() * 1e3,
            "sandbox destroy steps"
        );
        // The zygote goes (if this was its last sandbox) only after the sandbox is gone.
        drop(self.zygote.take());
    }
}

/// One fresh handler sandbox, as a cold start makes it.
#[derive(Debug)]
pub struct FreshSandbox<'a> {
    /// Its cgroup, relative to each hierarchy's root.
    pub cgroup: PathBuf,
    pub name: &'a LambdaName,
    /// What to mount at `/handler` (the worker passes `/proc/self/fd/N` of the directory it
    /// checked).
    pub handler_dir: &'a Path,
    /// Its scratch directory (must exist): `/host`, with `server_pipe`.
    pub scratch: &'a Path,
    pub packages: &'a [PackageDir],
    /// Mounted read-only at `/opt/<name>`.
    pub layers: &'a [LayerDir],
    /// The access points' detached mounts, each attached at `/mnt/<path>`
    /// ([`VolumeMapper::mounts`]).
    pub volumes: &'a [(Arc<sandbox::DetachedMount>, PathBuf)],
    /// Its GPUs' nodes (bound in `/dev`), device rules and driver files (a read-only view
    /// at `/usr/local/nvidia`), with `enable_gpu`.
    pub gpu: Option<&'a crate::gpu::GpuMounts>,
    /// The custom base it runs on (its root, Python and working directory); `None`: the
    /// cluster's `base_dir`.
    pub base: Option<&'a crate::bases::BaseRef>,
    /// Its whole environment ([`sandbox_env`]).
    pub env: &'a [(String, String)],
    pub limits: &'a LambdaLimits,
    pub hardening: &'a sandbox::Hardening,
    /// The maps of its own user namespace (`None`: the host's).
    pub user_ns: Option<&'a sandbox::IdMap>,
    /// Its stdout and stderr (the write end of the worker's output pipe); the sandbox gets its
    /// own copies.
    pub output: BorrowedFd<'a>,
}

/// Starts a fresh sandbox exactly as a cold start does: a listening `server_pipe` socket in
/// the scratch directory (passed in as fd 3), the spec (base read-only, `/handler` read-only,
/// the scratch directory as `/host`, the packages read-only under `/packages` and on
/// `LAMBDA_PACKAGES`, the layers read-only under `/opt`, the volumes under `/mnt`, the environment, cgroup limits and
/// `/tmp` size from the limits, stdout and stderr the output pipe) and the runtime (`-E`: the interpreter ignores `PYTHON*`
/// variables, as a forked one started before them; the runtime applies `PYTHONPATH`). Returns
/// the sandbox and a non-blocking connection to its runtime (already queued in the socket's
/// backlog, so the first request can be written at once). Blocking. Public so that benchmarks
/// can call a sandbox directly, without the HTTP layer.
pub fn spawn_fresh(
    cfg: &Config,
    cgroups: &CgroupSetup,
    fresh: &FreshSandbox<'_>,
) -> Result<(Sandbox, UnixStream), StartError> {
    let t0 = Instant::now();
    let (listener, conn) = listen_and_connect(fresh.scratch)?;
    let root = fresh
        .base
        .map_or(cfg.base_dir.as_path(), |b| b.root.as_path());
    let python = fresh.base.map_or(PYTHON, |b| b.info.python.as_str());
    // The image's working directory, when it is a directory of the base; else /host.
    let cwd = fresh.base.map_or("/host", crate::bases::BaseRef::workdir);
    let mut builder = SandboxSpec::builder(root, fresh.cgroup.clone());
    if !fresh.packages.is_empty() {
        let views = fresh
            .packages
            .iter()
            .map(|p| (p.host.clone(), p.rel.clone()))
            .collect();
        builder = builder.view("/packages", views);
    }
    if !fresh.layers.is_empty() {
        let views = fresh
            .layers
            .iter()
            .map(|l| (l.host.clone(), PathBuf::from(l.name.as_str())))
            .collect();
        builder = builder.view(LAYERS_DIR, views);
    }
    if !fresh.volumes.is_empty() {
        builder = builder.attach_view(
            crate::lambda_config::VOLUMES_MOUNT_DIR,
            fresh.volumes.to_vec(),
        );
    }
    let mut limits = fresh.limits.cgroup();
    if let Some(gpu) = fresh.gpu {
        for node in &gpu.nodes {
            builder = builder.device(node);
        }
        let files = gpu.files.clone();
        if !files.is_empty() {
            builder = builder.view(crate::gpu::NVIDIA_DIR, files);
        }
        limits.devices = Some(gpu.rules.clone());
    }
    // The handler directory is attached as a detached clone of what `handler_dir` names now,
    // never by path in the child.
    let handler_mount = sandbox::DetachedMount::clone_of(fresh.handler_dir, false)?;
    builder = builder
        .attach(Arc::new(handler_mount), "/handler")
        .mount(fresh.scratch, "/host", true)
        .tmp_mb(fresh.limits.tmp_mb)
        .hostname("lambda")
        .net(cfg.net.sandbox())
        .limits(limits)
        .harden(fresh.hardening.clone())
        .command([python, "-B", "-E", "-S", RUNTIME_PATH]);
    if let Some(map) = fresh.user_ns {
        builder = builder.user_ns(map.clone());
    }
    for (key, value) in fresh.env {
        builder = builder.env(key, value);
    }
    let output = Arc::new(
        fresh
            .output
            .try_clone_to_owned()
            .map_err(|source| StartError::Io {
                what: "duplicate the output pipe for",
                path: fresh.scratch.to_owned(),
                source,
            })?,
    );
    let spec = builder
        .cwd(cwd)
        .stdio(Output::Fd(Arc::clone(&output)), Output::Fd(output))
        .build()?;
    let prepared = t0.elapsed();
    let sandbox = Sandbox::spawn(&spec, cgroups, &[listener.as_fd()])?;
    tracing::debug!(
        lambda = %fresh.name,
        socket_spec_ms = prepared.as_secs_f64() * 1e3,
        "scratch socket and spec prepared"
    );
    drop(listener);
    Ok((sandbox, conn))
}

/// Binds `<scratch>/server_pipe` and connects to it at once: the connection waits in the
/// backlog until the runtime accepts it, so the first request can be written right away. The
/// connection is non-blocking.
fn listen_and_connect(scratch: &Path) -> Result<(UnixListener, UnixStream), StartError> {
    let sock = scratch.join("server_pipe");
    let listener = UnixListener::bind(&sock).map_err(|source| StartError::Io {
        what: "listen on",
        path: sock.clone(),
        source,
    })?;
    let conn = UnixStream::connect(&sock).map_err(|source| StartError::Io {
        what: "connect to",
        path: sock.clone(),
        source,
    })?;
    conn.set_nonblocking(true).map_err(StartError::Register)?;
    Ok((listener, conn))
}

/// Refuses a base whose runtime speaks another call protocol than this worker (a cluster made
/// by another version's admin): every call would fail.
fn check_runtime(base_dir: &Path) -> Result<(), LauncherError> {
    let path = base_dir.join(RUNTIME_PATH.trim_start_matches('/'));
    let found = match std::fs::read_to_string(&path) {
        Ok(source) => match runtime_client::declared_protocol(&source) {
            Some(runtime_client::CALL_PROTOCOL) => return Ok(()),
            Some(v) => format!("speaks call protocol {v}"),
            None => "declares no call protocol".to_owned(),
        },
        Err(e) => format!("cannot be read ({e})"),
    };
    Err(LauncherError::Runtime { path, found })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_whose_runtime_speaks_another_protocol_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let err = check_runtime(base.path()).unwrap_err().to_string();
        assert!(err.contains("cannot be read"), "{err}");
        let path = base.path().join(RUNTIME_PATH.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "import sys\n").unwrap();
        let err = check_runtime(base.path()).unwrap_err().to_string();
        assert!(err.contains("declares no call protocol"), "{err}");
        std::fs::write(&path, "CALL_PROTOCOL = 1\n").unwrap();
        let err = check_runtime(base.path()).unwrap_err().to_string();
        assert!(err.contains("speaks call protocol 1"), "{err}");
        assert!(err.contains("admin new"), "{err}");
        std::fs::write(
            &path,
            include_str!("../../../cluster-template/runtime/runtime.py"),
        )
        .unwrap();
        check_runtime(base.path()).unwrap();
    }
}
