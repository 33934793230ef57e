//! One zygote: its process (a sandbox running `zygote.py`), its control socket, the queue of
//! cgroups handed to it for its spare children, and its end ([`Drop`]). Also
//! [`SandboxMaker`], the real [`super::Maker`]: it starts the root zygote here, and forks
//! (`fork.rs`) with the `sandbox` crate.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};
use sandbox::cgroup::{CgroupManager, CgroupSetup, Limits};
use sandbox::{Sandbox, SandboxError, SandboxSpec, SpecError};

use super::fork::{ForkError, PrepareError, ZygoteFault};
use super::protocol::Outgoing;
use super::{zygote_env, Handle, HandlerRequest, Maker, ZygoteInfo, SPARES, ZYGOTE_PATH};
use crate::config::{Config, NetMode};

const PYTHON: &str = "/usr/bin/python3";

/// The root filesystem a maker's zygotes run on: the cluster's default base, or a custom one
/// (`crate::bases`), with its Python, image environment and working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ZygoteRoot {
    /// The custom base's name; `None`: the default base.
    pub base: Option<String>,
    pub dir: PathBuf,
    pub python: String,
    /// `KEY=value` entries of the image's `Env`.
    pub env: Vec<String>,
    /// The handler children's working directory (`/host` unless the base names another).
    pub workdir: String,
}

impl ZygoteRoot {
    /// The default base of `cfg`.
    pub(crate) fn default_of(cfg: &Config) -> Self {
        Self {
            base: None,
            dir: cfg.base_dir.clone(),
            python: PYTHON.to_owned(),
            env: Vec::new(),
            workdir: "/host".to_owned(),
        }
    }

    /// A custom base.
    pub(crate) fn of(base: &crate::bases::BaseRef) -> Self {
        Self {
            base: Some(base.name.to_string()),
            dir: base.root.clone(),
            python: base.info.python.clone(),
            env: base.info.env.clone(),
            workdir: base.workdir().to_owned(),
        }
    }
}

/// Memory (MiB) a zygote's cgroup keeps for each live sandbox forked from it: measured about
/// 0.5 MiB per hello sandbox on the root zygote (`docs/import-cache.md`), doubled for headroom.
const CHARGE_PER_CHILD_MB: u64 = 1;

/// One zygote (see the module docs).
pub struct Zygote {
    id: u64,
    /// Sorted `name/version` entries.
    packages: Vec<String>,
    parent: Option<Arc<Zygote>>,
    sandbox: Mutex<Option<Sandbox>>,
    pid: i32,
    control: OwnedFd,
    /// Its spare children, oldest first (the next request's at the front): each one's cgroup
    /// and the worker's end of its link.
    spares: Mutex<VecDeque<Spare>>,
    dir: PathBuf,
    created: Instant,
    last_used: Mutex<Instant>,
    forks: AtomicU64,
    retired: AtomicBool,
    /// The custom base it runs on (`None`: the default one).
    base: Option<String>,
    /// The maker's count of zygote destroys under way.
    destroying: Arc<AtomicUsize>,
}

/// One spare child of a zygote, as the worker holds it: the cgroup it joined (or will join:
/// the zygote forks it when the cgroup comes), and the socket its one request goes on. The
/// request goes to the spare directly, not through the zygote.
pub(super) struct Spare {
    pub cgroup: Box<dyn CgroupManager>,
    pub link: OwnedFd,
}

impl Spare {
    /// Sends the spare its request.
    pub(super) fn send(&self, zygote: &Zygote, out: &Outgoing<'_>) -> Result<(), ForkError> {
        send_message(&self.link, out).map_err(|errno| ForkError::Zygote {
            zygote: zygote.id,
            pid: zygote.pid,
            source: ZygoteFault::Send {
                what: "the fork request (on its spare's link)",
                errno,
            },
        })
    }
}

/// One message and its fds on `socket`.
fn send_message(socket: &OwnedFd, out: &Outgoing<'_>) -> Result<(), Errno> {
    let fds: Vec<RawFd> = out.fds().iter().map(AsRawFd::as_raw_fd).collect();
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[std::io::IoSlice::new(out.body())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(|_| ())
}

impl std::fmt::Debug for Zygote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zygote")
            .field("id", &self.id)
            .field("pid", &self.pid)
            .field("packages", &self.packages)
            .finish_non_exhaustive()
    }
}

impl Zygote {
    /// The zygote's id (its cgroup is `zy-<id>`).
    pub fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn pid(&self) -> i32 {
        self.pid
    }

    /// Its directory on the host (its `/host`, with its stdout and stderr).
    pub(super) fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Its spares, oldest first.
    pub(super) fn spares(&self) -> std::sync::MutexGuard<'_, VecDeque<Spare>> {
        self.spares.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends one message on the control socket.
    pub(super) fn send(&self, what: &'static str, out: &Outgoing<'_>) -> Result<(), ForkError> {
        send_message(&self.control, out).map_err(|errno| ForkError::Zygote {
            zygote: self.id,
            pid: self.pid,
            source: ZygoteFault::Send { what, errno },
        })
    }

    fn last_used(&self) -> Instant {
        self.last_used.lock().map(|t| *t).unwrap_or(self.created)
    }

    /// The zygote's memory and its spare children's.
    pub(super) fn memory_bytes(&self) -> u64 {
        let own = self
            .sandbox
            .lock()
            .ok()
            .and_then(|sb| sb.as_ref().map(|s| s.stats().memory_bytes))
            .unwrap_or(0);
        let spares: u64 = self
            .spares
            .lock()
            .map(|n| n.iter().filter_map(|s| s.cgroup.memory_usage().ok()).sum())
            .unwrap_or(0);
        own + spares
    }

    /// The zygote as `/stats` shows it.
    pub(super) fn info(&self) -> ZygoteInfo {
        ZygoteInfo {
            id: self.id,
            parent: self.parent.as_ref().map(|p| p.id),
            pid: self.pid,
            packages: self.packages.clone(),
            base: self.base.clone(),
            forks: self.forks.load(Ordering::Relaxed),
            memory_mb: super::mb(self.memory_bytes()),
            uptime_s: super::round1(self.created.elapsed().as_secs_f64()),
            idle_s: super::round1(self.last_used().elapsed().as_secs_f64()),
            retired: self.retired.load(Ordering::Relaxed),
        }
    }
}

impl Handle for Zygote {
    fn id(&self) -> u64 {
        self.id
    }

    fn pid(&self) -> i32 {
        self.pid
    }

    fn packages(&self) -> &[String] {
        &self.packages
    }

    fn parent_id(&self) -> Option<u64> {
        self.parent.as_ref().map(|p| p.id)
    }

    fn note_fork(&self) {
        self.forks.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }

    fn set_retired(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }
}

impl Drop for Zygote {
    /// Ends the zygote's sandbox (and with it its pid namespace) and removes its directory, on
    /// the blocking pool when there is one. Every sandbox forked from it is gone by now: each
    /// held an `Arc` of it.
    fn drop(&mut self) {
        let sandbox = self.sandbox.get_mut().ok().and_then(Option::take);
        let spares: Vec<_> = self
            .spares
            .get_mut()
            .map(|n| n.drain(..).collect())
            .unwrap_or_default();
        let dir = std::mem::take(&mut self.dir);
        let (id, pid) = (self.id, self.pid);
        let destroying = Arc::clone(&self.destroying);
        destroying.fetch_add(1, Ordering::SeqCst);
        let work = move || {
            if let Some(mut sb) = sandbox {
                if let Err(e) = sb.destroy() {
                    tracing::error!(zygote = id, pid, error = %e, "cannot destroy zygote");
                }
            }
            // The spares died with the zygote's pid namespace; their cgroups remain.
            for Spare { cgroup: cg, .. } in spares {
                if let Err(e) = cg.kill_all().and_then(|()| cg.remove()) {
                    tracing::error!(zygote = id, error = %e, "cannot remove the spare's cgroup");
                }
            }
            if let Err(e) = crate::cleanup::remove_dir_all_if_present(&dir) {
                tracing::warn!(zygote = id, path = %dir.display(), error = %e, "cannot remove zygote directory");
            }
            tracing::debug!(zygote = id, pid, "zygote destroyed");
            destroying.fetch_sub(1, Ordering::SeqCst);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(work);
            }
            Err(_) => work(),
        }
    }
}

/// A root zygote that could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the import cache is closed")]
    Closed,
    #[error("the root zygote is being started by another call")]
    Starting,
    #[error(
        "the root zygote failed to start {:.1} s ago; the next try is in {:.1} s",
        .ago.as_secs_f64(),
        .left.as_secs_f64()
    )]
    RecentlyFailed { ago: Duration, left: Duration },
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the control socket of zygote {zygote}: {errno}")]
    Socket { zygote: u64, errno: Errno },
    #[error("invalid spec for zygote {zygote}: {source}")]
    Spec { zygote: u64, source: SpecError },
    #[error("cannot start zygote {zygote}: {source}")]
    Spawn { zygote: u64, source: SandboxError },
    #[error("no user namespace for zygote {zygote}: {source}")]
    Identity {
        zygote: u64,
        source: crate::identity::IdentityError,
    },
}

/// Makes zygotes and forks them with the `sandbox` crate (the real [`Maker`]).
pub(crate) struct SandboxMaker {
    pub(super) cfg: Arc<Config>,
    /// The seccomp filters as hex, `:`-separated, for the zygotes' environment: what a spare
    /// installs while it prepares, and what a handler child adds after its mounts.
    seccomp_hex: (String, String),
    pub(super) cgroups: CgroupSetup,
    cgroup_parent: PathBuf,
    dir: PathBuf,
    /// Shared by the makers of every base, so that zygote and spare ids never repeat.
    next_id: Arc<AtomicU64>,
    destroying: Arc<AtomicUsize>,
    /// The uid range: zygotes get user namespaces mapped to all of it.
    ids: Option<Arc<crate::identity::HostIds>>,
    pub(super) root: ZygoteRoot,
}

impl std::fmt::Debug for SandboxMaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxMaker")
            .field("dir", &self.dir)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl SandboxMaker {
    /// `hardening`'s seccomp filters go to every zygote once, at its start, in two parts: its
    /// spares install the larger one while they prepare, a handler child the smaller one before
    /// it loads the handler (see `sandbox::harden`).
    pub(super) fn new(
        cfg: Arc<Config>,
        cgroups: CgroupSetup,
        hardening: &sandbox::Hardening,
        ids: Option<Arc<crate::identity::HostIds>>,
    ) -> Self {
        let hex = |progs: Vec<Vec<u8>>| {
            progs
                .iter()
                .map(|b| crate::hex(b))
                .collect::<Vec<_>>()
                .join(":")
        };
        Self {
            seccomp_hex: (
                hex(hardening.spare_filter_bytes()),
                hex(hardening.handler_filter_bytes()),
            ),
            cgroup_parent: cfg.cgroup_parent(),
            dir: cfg.worker_dir.join("import-cache"),
            next_id: Arc::new(AtomicU64::new(1)),
            destroying: Arc::new(AtomicUsize::new(0)),
            ids,
            cgroups,
            root: ZygoteRoot::default_of(&cfg),
            cfg,
        }
    }

    /// A maker of zygotes on `root`, sharing this one's ids, hardening and destroy count.
    pub(super) fn for_root(&self, root: ZygoteRoot) -> Self {
        Self {
            cfg: Arc::clone(&self.cfg),
            seccomp_hex: self.seccomp_hex.clone(),
            cgroups: self.cgroups.clone(),
            cgroup_parent: self.cgroup_parent.clone(),
            dir: self.dir.clone(),
            next_id: Arc::clone(&self.next_id),
            destroying: Arc::clone(&self.destroying),
            ids: self.ids.clone(),
            root,
        }
    }

    /// True while a zygote is being destroyed.
    pub(super) fn destroying(&self) -> bool {
        self.destroying.load(Ordering::SeqCst) > 0
    }

    /// A new id, for a zygote (`zy-<id>`) or a spare's cgroup (`zs-<id>`).
    pub(super) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The directory of zygote `id` (created by its start).
    pub(super) fn zygote_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("zy-{id}"))
    }

    /// Starts the root zygote as an ordinary sandbox running `zygote.py`.
    fn spawn_root(&self) -> Result<Arc<Zygote>, StartError> {
        let id = self.next_id();
        let dir = self.zygote_dir(id);
        std::fs::create_dir_all(&dir).map_err(|source| StartError::Dir {
            path: dir.clone(),
            source,
        })?;
        match self.spawn_root_in(id, &dir) {
            Ok((sandbox, control)) => {
                let z = self.register(id, Vec::new(), None, sandbox, control, dir);
                let base = self.root.base.as_deref().unwrap_or("default");
                tracing::info!(zygote = id, pid = z.pid, base, "root zygote started");
                Ok(z)
            }
            Err(e) => {
                let _ = crate::cleanup::remove_dir_all_if_present(&dir);
                Err(e)
            }
        }
    }

    fn spawn_root_in(
        &self,
        id: u64,
        dir: &std::path::Path,
    ) -> Result<(Sandbox, OwnedFd), StartError> {
        let (ours, theirs) =
            seqpacket_pair().map_err(|errno| StartError::Socket { zygote: id, errno })?;
        let net_ns = if self.cfg.net == NetMode::None {
            "1"
        } else {
            "0"
        };
        let mut spec =
            SandboxSpec::builder(&self.root.dir, self.cgroup_parent.join(format!("zy-{id}")))
                .mount(dir, "/host", true)
                .tmp_mb(self.cfg.tmp_mb)
                .hostname("zygote")
                .net(self.cfg.net.sandbox())
                .limits(self.zygote_limits())
                .command([self.root.python.as_str(), "-B", "-S", ZYGOTE_PATH])
                .env("LAMBDA_WORKDIR", &self.root.workdir)
                .env("LAMBDA_TMP_MB", &self.cfg.tmp_mb.to_string())
                .env("LAMBDA_NET_NS", net_ns)
                .env("LAMBDA_SECCOMP_SPARE", &self.seccomp_hex.0)
                .env("LAMBDA_SECCOMP_HANDLER", &self.seccomp_hex.1)
                .env("LAMBDA_PROC_MASK", &sandbox::ProcMask::host().to_env())
                .cwd("/host")
                .output(dir.join("stdout"), dir.join("stderr"));
        let mut env = zygote_env(&[]);
        crate::bases::overlay_env(&mut env, &self.root.env);
        for (key, value) in env {
            spec = spec.env(&key, &value);
        }
        if let Some(ids) = &self.ids {
            let map = ids
                .zygote_map()
                .map_err(|source| StartError::Identity { zygote: id, source })?;
            spec = spec.user_ns(map);
        }
        let spec = spec
            .build()
            .map_err(|source| StartError::Spec { zygote: id, source })?;
        let sandbox = Sandbox::spawn(&spec, &self.cgroups, &[theirs.as_fd()])
            .map_err(|source| StartError::Spawn { zygote: id, source })?;
        Ok((sandbox, ours))
    }

    /// A new zygote in service, its spares' cgroups handed over.
    pub(super) fn register(
        &self,
        id: u64,
        packages: Vec<String>,
        parent: Option<Arc<Zygote>>,
        sandbox: Sandbox,
        control: OwnedFd,
        dir: PathBuf,
    ) -> Arc<Zygote> {
        let z = Arc::new(Zygote {
            id,
            packages,
            parent,
            pid: sandbox.pid(),
            sandbox: Mutex::new(Some(sandbox)),
            control,
            spares: Mutex::new(VecDeque::new()),
            dir,
            created: Instant::now(),
            last_used: Mutex::new(Instant::now()),
            forks: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            base: self.root.base.clone(),
            destroying: Arc::clone(&self.destroying),
        });
        self.refill_or_log(&z);
        z
    }

    /// Limits of a sandbox forked from a zygote (the spare's cgroup), as a fresh one gets.
    pub(super) fn limits(&self) -> Limits {
        Limits {
            memory_bytes: Some(self.cfg.memory_mb * 1024 * 1024),
            pids_max: Some(self.cfg.max_procs),
            cpu_quota: None,
            devices: None,
        }
    }

    /// Limits of a zygote's own cgroup: `memory_mb`, plus [`CHARGE_PER_CHILD_MB`] for every
    /// sandbox the worker may hold, because pages the zygote changes after a fork stay charged
    /// to it while the child keeps the old copy.
    pub(super) fn zygote_limits(&self) -> Limits {
        let children = self.cfg.handler_cache_size as u64;
        Limits {
            memory_bytes: Some((self.cfg.memory_mb + children * CHARGE_PER_CHILD_MB) << 20),
            pids_max: Some(self.cfg.max_procs),
            cpu_quota: None,
            devices: None,
        }
    }

    /// Hands `zygote` cgroups until it has [`SPARES`] spare children (blocking).
    pub(super) fn refill(&self, zygote: &Zygote) -> Result<(), ForkError> {
        let mut spares = zygote.spares();
        while spares.len() < SPARES {
            let cgroup = self.hand_cgroup(zygote)?;
            spares.push_back(cgroup);
        }
        Ok(())
    }

    /// [`SandboxMaker::refill`], with a failure logged (the next fork hands one itself).
    pub(super) fn refill_or_log(&self, zygote: &Zygote) {
        if let Err(e) = self.refill(zygote) {
            tracing::warn!(zygote = zygote.id, error = %e, "cannot prepare a spare's cgroup");
        }
    }

    /// Creates a cgroup for one more spare child of the zygote and hands it over with the
    /// spare's link (the spare joins the cgroup before any request comes). Call with
    /// [`Zygote::spares`] held, and queue it.
    pub(super) fn hand_cgroup(&self, zygote: &Zygote) -> Result<Spare, ForkError> {
        let n = self.next_id();
        let cgroup = self
            .cgroups
            .cgroup(&self.cgroup_parent.join(format!("zs-{n}")));
        let spare_cgroup = |source| PrepareError::Cgroup {
            zygote: zygote.id,
            source,
        };
        let (link, theirs) = seqpacket_pair().map_err(|errno| PrepareError::Socket {
            what: "create a spare's link",
            errno,
        })?;
        cgroup.create(&self.limits()).map_err(spare_cgroup)?;
        let sent = cgroup
            .open_procs()
            .map_err(|e| ForkError::from(spare_cgroup(e)))
            .and_then(|procs| {
                let out = Outgoing::cgroup(&procs, theirs.as_fd()).map_err(PrepareError::from)?;
                zygote.send("a cgroup", &out)
            });
        match sent {
            Ok(()) => Ok(Spare { cgroup, link }),
            Err(e) => {
                let _ = cgroup.remove();
                Err(e)
            }
        }
    }
}

impl super::families::BaseMaker for SandboxMaker {
    fn for_base(&self, base: &crate::bases::BaseRef) -> Option<Self> {
        super::base_speaks_protocol(&base.root).then(|| self.for_root(ZygoteRoot::of(base)))
    }
}

impl Maker for SandboxMaker {
    type Zygote = Zygote;
    type Sandbox = Sandbox;
    type Request<'a> = HandlerRequest<'a>;

    fn start_root(&self) -> Result<Arc<Zygote>, StartError> {
        self.spawn_root()
    }

    fn fork_zygote(
        &self,
        parent: &Arc<Zygote>,
        packages: &[String],
    ) -> Result<Arc<Zygote>, ForkError> {
        super::fork::zygote(self, parent, packages)
    }

    fn fork_handler(
        &self,
        zygote: &Arc<Zygote>,
        req: &HandlerRequest<'_>,
    ) -> Result<Sandbox, ForkError> {
        super::fork::handler(self, zygote, req)
    }
}

/// A close-on-exec `SOCK_SEQPACKET` pair.
pub(super) fn seqpacket_pair() -> nix::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}
