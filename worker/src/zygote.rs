//! The import cache: zygotes (Python interpreters that have imported the runtime and a set of
//! packages, each in its own sandbox) that fork new handler sandboxes, and new zygotes.
//!
//! Rules (the steps inside a zygote are in `docs/import-cache.md` and `zygote.py`):
//! - the root zygote has no packages; it is started at the worker's start, and again on demand
//!   if it dies (at most once every [`ROOT_RETRY`]);
//! - a cold start with package set `P` forks from the zygote whose set is the largest subset of
//!   `P` (the most recently used among equals); the child imports the rest itself;
//! - when `P` has needed `zygote_min_starts` cold starts without an exact zygote, a zygote for
//!   `P` is forked from that best one (so zygotes form a tree, each child extending its
//!   parent's set) and the cold start forks from the new zygote;
//! - at most `import_cache_size` zygotes are kept; to make room, and when the memory budget is
//!   exceeded with no idle sandbox left to evict, the least recently used leaf (never the root)
//!   is retired: no more forks, and its process ends when the last sandbox forked from it (which
//!   lives in a pid namespace nested in the zygote's) is gone. Each sandbox holds an `Arc` of
//!   its zygote, and each zygote of its parent, so the order is enforced by ownership;
//! - a zygote that fails to fork (dead, or no answer within [`FORK_TIMEOUT`]) is retired at once;
//!   the cold start then falls back to a fresh sandbox, so a broken zygote costs time, never a
//!   failed call.

use std::collections::{HashMap, VecDeque};
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use nix::cmsg_space;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, socketpair, sockopt, AddressFamily, ControlMessage,
    ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use sandbox::cgroup::{CgroupManager, CgroupSetup, Limits};
use sandbox::{DetachedMount, Sandbox, SandboxSpec};
use serde::Serialize;

use crate::config::{Config, NetMode};

/// Path of the zygote program inside the base filesystem.
pub const ZYGOTE_PATH: &str = "/usr/local/lib/lambdaworker/zygote.py";
const PYTHON: &str = "/usr/bin/python3";
/// How long a fork may take from request to the child's report.
pub const FORK_TIMEOUT: Duration = Duration::from_secs(10);
/// Spare children each zygote keeps ready, so that a run of cold starts finds one prepared.
pub const SPARES: usize = 2;
/// Memory (MiB) a zygote's cgroup keeps for each live sandbox forked from it: measured about
/// 0.5 MiB per hello sandbox on the root zygote (`docs/import-cache.md`), doubled for headroom.
const CHARGE_PER_CHILD_MB: u64 = 1;
/// After the root zygote failed to start, cold starts wait this long before trying again.
const ROOT_RETRY: Duration = Duration::from_secs(10);

/// One zygote (see the module docs).
pub struct Zygote {
    id: u64,
    /// Sorted `name/version` entries.
    packages: Vec<String>,
    parent: Option<Arc<Zygote>>,
    sandbox: Mutex<Option<Sandbox>>,
    pid: i32,
    control: OwnedFd,
    /// The cgroups handed to the zygote for its spare children, oldest first (the next
    /// request's is at the front). The lock also orders what is sent on `control`, so that
    /// request k lands in the k-th cgroup handed over.
    next: Mutex<VecDeque<Box<dyn CgroupManager>>>,
    dir: PathBuf,
    created: Instant,
    last_used: Mutex<Instant>,
    forks: AtomicU64,
    retired: AtomicBool,
    /// The cache's count of zygote destroys under way.
    destroying: Arc<AtomicUsize>,
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
    fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }

    fn last_used(&self) -> Instant {
        self.last_used.lock().map(|t| *t).unwrap_or(self.created)
    }

    /// The zygote's memory and its spare child's.
    fn memory_bytes(&self) -> u64 {
        let own = self
            .sandbox
            .lock()
            .ok()
            .and_then(|sb| sb.as_ref().map(|s| s.stats().memory_bytes))
            .unwrap_or(0);
        let spares: u64 = self
            .next
            .lock()
            .map(|n| n.iter().filter_map(|c| c.memory_usage().ok()).sum())
            .unwrap_or(0);
        own + spares
    }

    /// The zygote's id (its cgroup is `zy-<id>`).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Zygote {
    /// Ends the zygote's sandbox (and with it its pid namespace) and removes its directory, on
    /// the blocking pool when there is one. Every sandbox forked from it is gone by now: each
    /// held an `Arc` of it.
    fn drop(&mut self) {
        let sandbox = self.sandbox.get_mut().ok().and_then(Option::take);
        let next: Vec<_> = self
            .next
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
            for cg in next {
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

/// A zygote as shown by `/stats` and `admin status`.
#[derive(Debug, Clone, Serialize)]
pub struct ZygoteInfo {
    pub id: u64,
    pub parent: Option<u64>,
    pub pid: i32,
    pub packages: Vec<String>,
    pub forks: u64,
    pub memory_mb: f64,
    pub uptime_s: f64,
    pub idle_s: f64,
    /// Retired zygotes fork no more; they end with their last sandbox.
    pub retired: bool,
}

/// Import cache counters and zygotes as shown by `/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct ImportCacheStats {
    pub enabled: bool,
    pub zygotes: Vec<ZygoteInfo>,
    pub created: u64,
    pub retired: u64,
    pub forks: u64,
    pub fork_failures: u64,
    pub memory_mb: f64,
}

/// What a fork made.
#[derive(Debug)]
pub struct Forked {
    pub sandbox: Sandbox,
    pub zygote: Arc<Zygote>,
}

/// The import cache of one worker (see the module docs).
pub struct ImportCache {
    cfg: Arc<Config>,
    /// The seccomp filters as hex, `:`-separated, for the zygotes' environment: what a spare
    /// installs while it prepares, and what a handler child adds after its mounts.
    seccomp_hex: (String, String),
    cgroups: CgroupSetup,
    cgroup_parent: PathBuf,
    dir: PathBuf,
    enabled: bool,
    live: Mutex<Vec<Arc<Zygote>>>,
    retired_list: Mutex<Vec<Weak<Zygote>>>,
    demand: Mutex<HashMap<Vec<String>, u64>>,
    create_lock: Mutex<()>,
    root_failed: Mutex<Option<Instant>>,
    next_id: AtomicU64,
    destroying: Arc<AtomicUsize>,
    created: AtomicU64,
    retired: AtomicU64,
    forks: AtomicU64,
    fork_failures: AtomicU64,
}

impl std::fmt::Debug for ImportCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportCache")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// Paths of a sandbox the cache is asked to fork.
#[derive(Debug)]
pub struct HandlerRequest<'a> {
    pub handler_dir: &'a Path,
    pub scratch: &'a Path,
    /// (host directory, `name/version`) of every package the lambda needs.
    pub packages: &'a [(PathBuf, PathBuf)],
    pub listen: BorrowedFd<'a>,
    pub env: &'a [(String, String)],
    /// The lambda's limits (cgroup and `/tmp` size).
    pub limits: &'a crate::lambda_config::LambdaLimits,
    /// What the child gives up before it loads the handler.
    pub hardening: &'a sandbox::Hardening,
}

impl ImportCache {
    /// A cache for `cfg`; enabled when `import_cache` is set and the base has the zygote program.
    /// `hardening`'s seccomp filters go to every zygote once, at its start, in two parts: its
    /// spares install the larger one while they prepare, a handler child the smaller one before
    /// it loads the handler (see `sandbox::harden`).
    pub fn new(cfg: Arc<Config>, cgroups: CgroupSetup, hardening: &sandbox::Hardening) -> Self {
        let has_program = cfg
            .base_dir
            .join(ZYGOTE_PATH.trim_start_matches('/'))
            .is_file();
        if cfg.import_cache && !has_program {
            tracing::warn!(
                base = %cfg.base_dir.display(),
                "the base has no {ZYGOTE_PATH} (a cluster made by an older admin): import cache off"
            );
        }
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
            enabled: cfg.import_cache && has_program,
            live: Mutex::new(Vec::new()),
            retired_list: Mutex::new(Vec::new()),
            demand: Mutex::new(HashMap::new()),
            create_lock: Mutex::new(()),
            root_failed: Mutex::new(None),
            next_id: AtomicU64::new(1),
            destroying: Arc::new(AtomicUsize::new(0)),
            created: AtomicU64::new(0),
            retired: AtomicU64::new(0),
            forks: AtomicU64::new(0),
            fork_failures: AtomicU64::new(0),
            cgroups,
            cfg,
        }
    }

    /// Whether sandboxes are forked from zygotes.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Starts the root zygote (blocking). An error leaves the cache working: the next cold
    /// start tries again.
    pub fn start(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        let _guard = self.create_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.ensure_root().map(|_| ())
    }

    /// Forks a handler sandbox for `req` from the best zygote. `Ok(None)`: the cache is off or
    /// has no zygote to offer (the caller starts a fresh sandbox). Blocking.
    pub fn fork_handler(&self, req: &HandlerRequest<'_>) -> Result<Option<Forked>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let want = package_set(req.packages);
        let Some(zygote) = self.zygote_for(&want) else {
            return Ok(None);
        };
        let mounts = ForkMounts::new(Some(req.handler_dir), req.scratch, req.packages)?;
        let out = req.scratch;
        let result = self.fork(
            &zygote,
            "handler",
            Some((req.limits, req.hardening)),
            &mounts,
            &want,
            req.listen,
            (&out.join("stdout"), &out.join("stderr")),
            req.env,
        );
        match result {
            Ok(sandbox) => Ok(Some(Forked { sandbox, zygote })),
            Err(e) => Err(format!("zygote {}: {e}", zygote.id)),
        }
    }

    /// The zygote to fork `want` from, creating the root or an exact zygote where the rules
    /// say so.
    fn zygote_for(&self, want: &[String]) -> Option<Arc<Zygote>> {
        let mut best = self.best(want);
        if best.is_none() {
            let _guard = self.create_lock.lock().unwrap_or_else(|p| p.into_inner());
            best = self.best(want).or_else(|| self.ensure_root().ok());
        }
        let best = best?;
        if best.packages.len() == want.len() || !self.cfg.package_zygotes {
            return Some(best);
        }
        let starts = {
            let mut demand = self.demand.lock().unwrap_or_else(|p| p.into_inner());
            let n = demand.entry(want.to_vec()).or_insert(0);
            *n += 1;
            *n
        };
        if starts < self.cfg.zygote_min_starts {
            return Some(best);
        }
        let _guard = self.create_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(exact) = self.best(want).filter(|z| z.packages.len() == want.len()) {
            return Some(exact);
        }
        match self.create_child(&best, want) {
            Ok(z) => {
                // Counting starts again if this zygote is ever retired.
                let mut demand = self.demand.lock().unwrap_or_else(|p| p.into_inner());
                demand.remove(want);
                Some(z)
            }
            Err(e) => {
                tracing::warn!(packages = ?want, error = %e, "cannot create a zygote; forking from its parent");
                Some(best)
            }
        }
    }

    /// The live zygote with the largest package set that is a subset of `want`.
    fn best(&self, want: &[String]) -> Option<Arc<Zygote>> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.iter()
            .filter(|z| z.packages.iter().all(|p| want.binary_search(p).is_ok()))
            .max_by_key(|z| (z.packages.len(), z.last_used()))
            .cloned()
    }

    /// The root zygote, started now if it is missing. Call with `create_lock` held.
    fn ensure_root(&self) -> Result<Arc<Zygote>, String> {
        if let Some(root) = self.best(&[]) {
            return Ok(root);
        }
        {
            let failed = self.root_failed.lock().unwrap_or_else(|p| p.into_inner());
            if failed.is_some_and(|t| t.elapsed() < ROOT_RETRY) {
                return Err("the root zygote failed to start recently".to_owned());
            }
        }
        match self.spawn_root() {
            Ok(z) => {
                tracing::info!(zygote = z.id, pid = z.pid, "root zygote started");
                Ok(z)
            }
            Err(e) => {
                *self.root_failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                tracing::warn!(error = %e, "cannot start the root zygote");
                Err(e)
            }
        }
    }

    /// A new zygote in service: its spares' cgroups handed over, in the live list, counted.
    fn register(
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
            next: Mutex::new(VecDeque::new()),
            dir,
            created: Instant::now(),
            last_used: Mutex::new(Instant::now()),
            forks: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            destroying: Arc::clone(&self.destroying),
        });
        self.refill(&z);
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(&z));
        self.created.fetch_add(1, Ordering::Relaxed);
        z
    }

    fn new_dir(&self, id: u64) -> Result<PathBuf, String> {
        let dir = self.dir.join(format!("zy-{id}"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// Starts the root zygote as an ordinary sandbox running `zygote.py`.
    fn spawn_root(&self) -> Result<Arc<Zygote>, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let dir = self.new_dir(id)?;
        let result = (|| {
            let (ours, theirs) = control_pair()?;
            let mut spec = SandboxSpec::builder(
                &self.cfg.base_dir,
                self.cgroup_parent.join(format!("zy-{id}")),
            )
            .mount(&dir, "/host", true)
            .tmp_mb(self.cfg.tmp_mb)
            .hostname("zygote")
            .net(self.cfg.net.sandbox())
            .limits(self.zygote_limits())
            .command([PYTHON, "-B", "-S", ZYGOTE_PATH])
            .env("LAMBDA_TMP_MB", &self.cfg.tmp_mb.to_string())
            .env(
                "LAMBDA_NET_NS",
                if self.cfg.net == NetMode::None {
                    "1"
                } else {
                    "0"
                },
            )
            .env("LAMBDA_SECCOMP_SPARE", &self.seccomp_hex.0)
            .env("LAMBDA_SECCOMP_HANDLER", &self.seccomp_hex.1)
            .env("LAMBDA_PROC_MASK", &sandbox::ProcMask::host().to_env())
            .cwd("/host")
            .output(dir.join("stdout"), dir.join("stderr"));
            for (key, value) in zygote_env(&[]) {
                spec = spec.env(&key, &value);
            }
            let spec = spec
                .build()
                .map_err(|e| format!("invalid zygote spec: {e}"))?;
            let sandbox = Sandbox::spawn(&spec, &self.cgroups, &[theirs.as_fd()])
                .map_err(|e| format!("cannot start the root zygote: {e}"))?;
            Ok::<_, String>((sandbox, ours))
        })();
        match result {
            Ok((sandbox, control)) => {
                Ok(self.register(id, Vec::new(), None, sandbox, control, dir))
            }
            Err(e) => {
                let _ = crate::cleanup::remove_dir_all_if_present(&dir);
                Err(e)
            }
        }
    }

    /// Forks a zygote for `want` from `parent`, first retiring the least recently used leaf
    /// if the cache is full. Call with `create_lock` held.
    fn create_child(&self, parent: &Arc<Zygote>, want: &[String]) -> Result<Arc<Zygote>, String> {
        let full =
            self.live.lock().unwrap_or_else(|p| p.into_inner()).len() >= self.cfg.import_cache_size;
        if full && self.retire_lru(Some(parent.id)).is_none() {
            return Err(format!(
                "the import cache is full ({} zygotes, none retirable)",
                self.cfg.import_cache_size
            ));
        }
        let packages: Vec<(PathBuf, PathBuf)> = want
            .iter()
            .map(|rel| (self.cfg.packages_dir.join(rel), PathBuf::from(rel)))
            .collect();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let dir = self.new_dir(id)?;
        let result = (|| {
            let mounts = ForkMounts::new(None, &dir, &packages)?;
            let (ours, theirs) = control_pair()?;
            let sandbox = self.fork(
                parent,
                "zygote",
                None,
                &mounts,
                want,
                theirs.as_fd(),
                (&dir.join("stdout"), &dir.join("stderr")),
                &zygote_env(want),
            )?;
            // It runs in a spare's cgroup, made with a sandbox's limits: raise them.
            self.cgroups
                .cgroup(sandbox.cgroup_path())
                .create(&self.zygote_limits())
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((sandbox, ours))
        })();
        match result {
            Ok((sandbox, control)) => {
                let parent_ref = Some(Arc::clone(parent));
                let z = self.register(id, want.to_vec(), parent_ref, sandbox, control, dir);
                tracing::info!(zygote = id, parent = parent.id, pid = z.pid, packages = ?want, "zygote started");
                Ok(z)
            }
            Err(e) => {
                let _ = crate::cleanup::remove_dir_all_if_present(&dir);
                Err(format!("zygote {} cannot fork a zygote: {e}", parent.id))
            }
        }
    }

    /// Limits of a sandbox forked from a zygote (the spare's cgroup), as a fresh one gets.
    fn limits(&self) -> Limits {
        Limits {
            memory_bytes: Some(self.cfg.memory_mb * 1024 * 1024),
            pids_max: Some(self.cfg.max_procs),
            cpu_quota: None,
        }
    }

    /// Limits of a zygote's own cgroup: `memory_mb`, plus [`CHARGE_PER_CHILD_MB`] for every
    /// sandbox the worker may hold, because pages the zygote changes after a fork stay charged
    /// to it while the child keeps the old copy.
    fn zygote_limits(&self) -> Limits {
        let children = self.cfg.handler_cache_size as u64;
        Limits {
            memory_bytes: Some((self.cfg.memory_mb + children * CHARGE_PER_CHILD_MB) << 20),
            pids_max: Some(self.cfg.max_procs),
            cpu_quota: None,
        }
    }

    /// Hands `zygote` cgroups until it has [`SPARES`] spare children (blocking). Called when
    /// a zygote starts and after each fork, off the request's path (once the new sandbox has
    /// answered its first call), so that making spares never competes with a cold start; a
    /// fork that finds none hands one itself first.
    pub fn refill(&self, zygote: &Zygote) {
        let mut next = zygote.next.lock().unwrap_or_else(|p| p.into_inner());
        while next.len() < SPARES {
            if let Err(e) = self.hand_cgroup(zygote, &mut next) {
                tracing::warn!(zygote = zygote.id, error = %e, "cannot prepare a spare's cgroup");
                break;
            }
        }
    }

    /// Creates a cgroup for one more spare child of the zygote and hands it over (the spare
    /// joins it before any request comes). `next` is the zygote's locked queue.
    fn hand_cgroup(
        &self,
        zygote: &Zygote,
        next: &mut VecDeque<Box<dyn CgroupManager>>,
    ) -> Result<(), String> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cgroup = self
            .cgroups
            .cgroup(&self.cgroup_parent.join(format!("zs-{n}")));
        cgroup.create(&self.limits()).map_err(|e| e.to_string())?;
        let sent = (|| {
            let procs = cgroup.open_procs().map_err(|e| e.to_string())?;
            let fds: Vec<RawFd> = procs.iter().map(AsRawFd::as_raw_fd).collect();
            let body = serde_json::to_vec(&serde_json::json!({
                "kind": "cgroup",
                "fds": vec!["procs"; fds.len()],
            }))
            .map_err(|e| e.to_string())?;
            send_with_fds(&zygote.control, &body, &fds)
                .map_err(|e| format!("cannot hand a cgroup to zygote {}: {e}", zygote.id))?;
            Ok::<_, String>(())
        })();
        match sent {
            Ok(()) => {
                next.push_back(cgroup);
                Ok(())
            }
            Err(e) => {
                let _ = cgroup.remove();
                Err(e)
            }
        }
    }

    /// One fork: the request with its fds; the child's report; the new sandbox, adopted in the
    /// cgroup its spare joined. The next spare's cgroup comes from [`ImportCache::refill`].
    #[allow(clippy::too_many_arguments)]
    fn fork(
        &self,
        zygote: &Arc<Zygote>,
        kind: &str,
        limits: Option<(&crate::lambda_config::LambdaLimits, &sandbox::Hardening)>,
        mounts: &ForkMounts,
        packages: &[String],
        listen: BorrowedFd<'_>,
        output: (&Path, &Path),
        env: &[(String, String)],
    ) -> Result<Sandbox, String> {
        // Each step below holds the `next` lock, so the zygote always sees a cgroup before
        // the request that uses it: request k runs in the k-th cgroup handed over.
        let (cgroup, sent) = {
            let mut next = zygote.next.lock().unwrap_or_else(|p| p.into_inner());
            if next.is_empty() {
                self.hand_cgroup(zygote, &mut next)
                    .map_err(|e| format!("no cgroup for the spare: {e}"))?;
            }
            let Some(cgroup) = next.pop_front() else {
                return Err("no cgroup for the spare".to_owned());
            };
            // The spare's cgroup was made with the defaults; a lambda may have its own.
            let mut tmp_mb = self.cfg.tmp_mb;
            if let Some((l, _)) = limits {
                tmp_mb = l.tmp_mb;
                if l.cgroup() != self.limits() {
                    if let Err(e) = cgroup.create(&l.cgroup()) {
                        // Nothing was sent: the spare stays first in line, and so its cgroup.
                        next.push_front(cgroup);
                        return Err(format!("cannot set the sandbox's limits: {e}"));
                    }
                }
            }
            let harden = limits.map(|(_, h)| h);
            let sent = self.send_request(
                zygote, kind, tmp_mb, harden, mounts, packages, listen, output, env,
            );
            (cgroup, sent)
        };
        let report = sent.and_then(|reply| read_report(&reply, zygote));
        if report.is_ok() && kind == "zygote" {
            // A handler's caller refills later, off its path (`refill`); a zygote's now.
            self.refill(zygote);
        }
        match report {
            Ok(pid) => match Sandbox::adopt(pid, cgroup) {
                Ok(sb) => {
                    zygote.forks.fetch_add(1, Ordering::Relaxed);
                    self.forks.fetch_add(1, Ordering::Relaxed);
                    zygote.touch();
                    Ok(sb)
                }
                Err(e) => {
                    self.fork_failures.fetch_add(1, Ordering::Relaxed);
                    Err(format!("cannot adopt the forked process {pid}: {e}"))
                }
            },
            Err((e, zygote_broken)) => {
                self.fork_failures.fetch_add(1, Ordering::Relaxed);
                if let Err(ce) = cgroup.kill_all().and_then(|()| cgroup.remove()) {
                    tracing::error!(cgroup = %cgroup.path().display(), error = %ce, "cannot remove the cgroup of a failed fork");
                }
                if zygote_broken {
                    self.retire(zygote.id, "it failed to fork");
                }
                Err(e)
            }
        }
    }

    /// Sends one fork request; returns the socket the child will report on, or (error,
    /// whether the zygote itself is at fault).
    #[allow(clippy::too_many_arguments)]
    fn send_request(
        &self,
        zygote: &Zygote,
        kind: &str,
        tmp_mb: u64,
        harden: Option<&sandbox::Hardening>,
        mounts: &ForkMounts,
        packages: &[String],
        listen: BorrowedFd<'_>,
        output: (&Path, &Path),
        env: &[(String, String)],
    ) -> Result<OwnedFd, (String, bool)> {
        let ours = |e: String| (e, false);
        let stdout = open_output(output.0).map_err(ours)?;
        let stderr = open_output(output.1).map_err(ours)?;
        let (reply, reply_child) = seqpacket_pair("the reply socket").map_err(ours)?;
        setsockopt(&reply, sockopt::PassCred, &true)
            .map_err(|e| ours(format!("cannot set SO_PASSCRED on the reply socket: {e}")))?;

        let mut roles: Vec<&str> = Vec::new();
        let mut fds: Vec<RawFd> = Vec::new();
        let mut add = |role: &'static str, fd: BorrowedFd<'_>| {
            roles.push(role);
            fds.push(fd.as_raw_fd());
        };
        add("reply", reply_child.as_fd());
        add("host", mounts.host.as_fd());
        if let Some(h) = &mounts.handler {
            add("handler", h.as_fd());
        }
        for p in &mounts.packages {
            add("package", p.as_fd());
        }
        add("listen", listen);
        add("stdout", stdout.as_fd());
        add("stderr", stderr.as_fd());
        let mut request = serde_json::json!({
            "kind": kind,
            "fds": roles,
            "packages": packages,
            "env": env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "net_ns": self.cfg.net == NetMode::None,
            "tmp_mb": tmp_mb,
        });
        if let Some(h) = harden {
            // The filters themselves came with the zygote's environment.
            request["harden"] = serde_json::json!({"uid": h.uid, "gid": h.gid});
        }
        let body = serde_json::to_vec(&request).map_err(|e| ours(e.to_string()))?;
        send_with_fds(&zygote.control, &body, &fds)
            .map_err(|e| (format!("cannot send the fork request: {e}"), true))?;
        // The child holds its copies now; ours must go so that a dead child reads as EOF.
        Ok(reply)
    }

    /// Retires the zygote `id` (no more forks; it ends with its last sandbox).
    fn retire(&self, id: u64, why: &str) -> bool {
        let removed = {
            let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            let at = live.iter().position(|z| z.id == id);
            at.map(|i| live.remove(i))
        };
        let Some(z) = removed else {
            return false;
        };
        z.retired.store(true, Ordering::Relaxed);
        self.retired.fetch_add(1, Ordering::Relaxed);
        tracing::info!(zygote = id, pid = z.pid, why, "zygote retired");
        self.retired_list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(&z));
        true
    }

    /// Retires the least recently used leaf zygote other than the root and `keep`; returns its id.
    pub fn retire_lru(&self, keep: Option<u64>) -> Option<u64> {
        let victim = {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            live.iter()
                .filter(|z| z.parent.is_some() && Some(z.id) != keep)
                .filter(|z| {
                    !live
                        .iter()
                        .any(|c| c.parent.as_ref().is_some_and(|p| p.id == z.id))
                })
                .min_by_key(|z| z.last_used())
                .map(|z| z.id)
        }?;
        self.retire(victim, "least recently used").then_some(victim)
    }

    /// Memory of every zygote still alive, retired ones included (blocking, cheap).
    pub fn memory_in_use(&self) -> u64 {
        let live: u64 = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|z| z.memory_bytes())
            .sum();
        let mut retired = self.retired_list.lock().unwrap_or_else(|p| p.into_inner());
        retired.retain(|w| w.strong_count() > 0);
        live + retired
            .iter()
            .filter_map(Weak::upgrade)
            .map(|z| z.memory_bytes())
            .sum::<u64>()
    }

    /// Counters and the zygotes, live first (blocking, cheap).
    pub fn stats(&self) -> ImportCacheStats {
        let info = |z: &Arc<Zygote>| ZygoteInfo {
            id: z.id,
            parent: z.parent.as_ref().map(|p| p.id),
            pid: z.pid,
            packages: z.packages.clone(),
            forks: z.forks.load(Ordering::Relaxed),
            memory_mb: mb(z.memory_bytes()),
            uptime_s: round1(z.created.elapsed().as_secs_f64()),
            idle_s: round1(z.last_used().elapsed().as_secs_f64()),
            retired: z.retired.load(Ordering::Relaxed),
        };
        let mut zygotes: Vec<ZygoteInfo> = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(info)
            .collect();
        zygotes.sort_by_key(|z| z.id);
        let retired: Vec<Arc<Zygote>> = self
            .retired_list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        zygotes.extend(retired.iter().map(info));
        ImportCacheStats {
            enabled: self.enabled,
            memory_mb: mb(zygotes
                .iter()
                .map(|z| (z.memory_mb * 1048576.0) as u64)
                .sum()),
            zygotes,
            created: self.created.load(Ordering::Relaxed),
            retired: self.retired.load(Ordering::Relaxed),
            forks: self.forks.load(Ordering::Relaxed),
            fork_failures: self.fork_failures.load(Ordering::Relaxed),
        }
    }

    /// True while any zygote, live or retired, still exists or is being destroyed.
    pub fn any_alive(&self) -> bool {
        if self.destroying.load(Ordering::SeqCst) > 0 {
            return true;
        }
        let live = !self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        let mut retired = self.retired_list.lock().unwrap_or_else(|p| p.into_inner());
        retired.retain(|w| w.strong_count() > 0);
        live || !retired.is_empty()
    }

    /// Retires every zygote (shutdown); each ends with its last sandbox.
    pub fn close(&self) {
        let all: Vec<Arc<Zygote>> = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for z in &all {
            z.retired.store(true, Ordering::Relaxed);
        }
        let mut retired = self.retired_list.lock().unwrap_or_else(|p| p.into_inner());
        retired.extend(all.iter().map(Arc::downgrade));
        drop(retired);
        drop(all);
    }
}

/// The detached mounts of one fork, made in the worker's mount namespace.
struct ForkMounts {
    host: DetachedMount,
    handler: Option<DetachedMount>,
    packages: Vec<DetachedMount>,
}

impl ForkMounts {
    fn new(
        handler: Option<&Path>,
        host: &Path,
        packages: &[(PathBuf, PathBuf)],
    ) -> Result<Self, String> {
        let clone =
            |p: &Path, writable| DetachedMount::clone_of(p, writable).map_err(|e| e.to_string());
        // The package list is sorted like the request's `packages` (see package_set).
        let mut sorted: Vec<&(PathBuf, PathBuf)> = packages.iter().collect();
        sorted.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(Self {
            host: clone(host, true)?,
            handler: handler.map(|h| clone(h, false)).transpose()?,
            packages: sorted
                .iter()
                .map(|(dir, _)| clone(dir, false))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The sorted `name/version` entries of a package list.
fn package_set(packages: &[(PathBuf, PathBuf)]) -> Vec<String> {
    let mut v: Vec<String> = packages
        .iter()
        .map(|(_, rel)| rel.to_string_lossy().into_owned())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The environment every sandbox starts with: a zygote's, and (plus `LAMBDA_NAME`) a
/// handler's; `packages` are `name/version` entries.
pub(crate) fn zygote_env(packages: &[String]) -> Vec<(String, String)> {
    let paths: Vec<String> = packages.iter().map(|p| format!("/packages/{p}")).collect();
    vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("HOME".into(), "/tmp".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
        ("LAMBDA_PACKAGES".into(), paths.join(":")),
    ]
}

/// A close-on-exec `SOCK_SEQPACKET` pair; `what` names it in the error.
fn seqpacket_pair(what: &str) -> Result<(OwnedFd, OwnedFd), String> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("cannot create {what}: {e}"))
}

/// One message on a zygote's control socket, with `fds` passed along (`SCM_RIGHTS`).
fn send_with_fds(control: &OwnedFd, body: &[u8], fds: &[RawFd]) -> nix::Result<usize> {
    sendmsg::<()>(
        control.as_raw_fd(),
        &[std::io::IoSlice::new(body)],
        &[ControlMessage::ScmRights(fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
}

fn control_pair() -> Result<(OwnedFd, OwnedFd), String> {
    seqpacket_pair("a zygote control socket")
}

fn open_output(path: &Path) -> Result<std::fs::File, String> {
    sandbox::process::open_output(path).map_err(|e| e.to_string())
}

/// Waits for the child's report on `reply`: `ok` with its credentials, or `error: ...`.
fn read_report(reply: &OwnedFd, zygote: &Zygote) -> Result<i32, (String, bool)> {
    let deadline = Instant::now() + FORK_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(reply.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) if left.is_zero() => {
                return Err((
                    format!("no report from the forked child within {FORK_TIMEOUT:?}"),
                    true,
                ))
            }
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => break,
            Err(e) => return Err((format!("cannot wait for the forked child: {e}"), true)),
        }
    }
    let mut buf = [0u8; 4096];
    let mut space = cmsg_space!(nix::sys::socket::UnixCredentials);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        reply.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| (format!("cannot read the forked child's report: {e}"), true))?;
    let mut pid = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmCredentials(creds) = c {
                pid = Some(creds.pid());
            }
        }
    }
    let len = msg.bytes;
    let text = String::from_utf8_lossy(&buf[..len]).into_owned();
    if len == 0 {
        let tail = crate::files::read_tail(&zygote.dir.join("stderr"), 2048);
        return Err((
            format!(
                "the zygote (pid {}) closed the reply without a report; its stderr ends: {}",
                zygote.pid,
                tail.trim_end()
            ),
            true,
        ));
    }
    match (text.as_str(), pid) {
        ("ok", Some(pid)) if pid > 0 => Ok(pid),
        ("ok", _) => Err(("the forked child's report carried no pid".to_owned(), false)),
        (other, _) => Err((
            format!(
                "the forked child failed: {}",
                other.trim_start_matches("error: ")
            ),
            false,
        )),
    }
}

fn mb(bytes: u64) -> f64 {
    (bytes as f64 / 1048576.0 * 10.0).round() / 10.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
