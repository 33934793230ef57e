//! The import cache: zygotes (Python interpreters that have imported the runtime and a set of
//! packages, each in its own sandbox) that fork new handler sandboxes, and new zygotes.
//!
//! This module is the cache the manager uses ([`ImportCache`], what `/stats` shows) and its
//! rules. `policy.rs` applies the rules over any [`Maker`] of zygotes (a recording fake in its
//! tests); `zygote.rs` is one zygote (its process, control socket, spares with their links)
//! and the real maker;
//! `fork.rs` one fork; `protocol.rs` the messages the worker and `zygote.py` exchange. The
//! rules (the steps inside a zygote are in `docs/import-cache.md` and `zygote.py`):
//! - the root zygote has no packages; it is started at the worker's start, and again on demand
//!   if it dies (at most once every [`ROOT_RETRY`]); while it is being started, cold starts that
//!   need it start fresh sandboxes instead of waiting;
//! - a cold start with package set `P` forks from the zygote whose set is the largest subset of
//!   `P` (the most recently used among equals); the child imports the rest itself;
//! - with `package_zygotes` on (and user namespaces: without them a zygote holds the host's
//!   root, so they are off), when `P` has needed `zygote_min_starts` cold starts without an
//!   exact zygote, a zygote for `P` is forked from that best one (so zygotes form a tree, each
//!   child extending its parent's set) and the cold start forks from the new zygote; cold starts
//!   of `P` meanwhile fork from the best one, without waiting. Cold starts are counted for the
//!   [`DEMAND_LIMIT`] most recently counted sets;
//! - at most `import_cache_size` zygotes are kept, those being made included; to make room,
//!   and when the memory budget is exceeded with no idle sandbox left to evict, the least
//!   recently used leaf (never the root, nor a zygote being forked from) is retired: no more
//!   forks, and its process ends when the last sandbox forked from it (which lives in a pid
//!   namespace nested in the zygote's) is gone. Each sandbox holds an `Arc` of its zygote, and
//!   each zygote of its parent, so the order is enforced by ownership;
//! - a zygote that fails to fork by its own fault (dead, or no report within
//!   [`FORK_TIMEOUT`]: [`Fault::Zygote`]) is retired at once; the cold start then falls back to
//!   a fresh sandbox, so a broken zygote costs time, never a failed call;
//! - the cache is off when the base's `zygote.py` is missing or speaks another [`PROTOCOL`];
//! - each custom base a function names has a family of zygotes of its own, on that base, with
//!   these same rules (`families.rs`: which are kept, and how they give way).

mod families;
mod fork;
mod policy;
mod protocol;
#[allow(
    clippy::module_inception,
    reason = "one zygote (zygote/zygote.rs) beside the cache of them (zygote/mod.rs)"
)]
mod zygote;

#[cfg(test)]
mod wire_tests;

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sandbox::cgroup::CgroupSetup;
use sandbox::Sandbox;
use serde::Serialize;

use crate::config::Config;

pub use fork::{ChildFault, Fault, ForkError, PrepareError, ZygoteFault};
pub(crate) use policy::{Handle, Maker, Policy, Rules};
pub use protocol::{ProtocolError, PROTOCOL};
pub use zygote::{StartError, Zygote};

/// Path of the zygote program inside the base filesystem.
pub const ZYGOTE_PATH: &str = "/usr/local/lib/lambdaworker/zygote.py";
/// How long a fork may take from request to the child's report.
pub const FORK_TIMEOUT: Duration = Duration::from_secs(10);
/// Spare children each zygote keeps ready, so that a run of cold starts finds one prepared.
pub const SPARES: usize = 2;
/// After the root zygote failed to start, cold starts wait this long before trying again.
pub const ROOT_RETRY: Duration = Duration::from_secs(10);
/// Package sets whose cold starts are counted at once; the least recently counted goes first.
pub const DEMAND_LIMIT: usize = 1024;

/// A zygote as shown by `/stats` and `admin status`.
#[derive(Debug, Clone, Serialize)]
pub struct ZygoteInfo {
    pub id: u64,
    pub parent: Option<u64>,
    pub pid: i32,
    pub packages: Vec<String>,
    /// The custom base it runs on; absent: the default base.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
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
    /// Whether package zygotes are made (`package_zygotes`, and user namespaces available).
    pub package_zygotes: bool,
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

/// Paths of a sandbox the cache is asked to fork.
#[derive(Debug)]
pub struct HandlerRequest<'a> {
    pub handler_dir: &'a Path,
    pub scratch: &'a Path,
    /// (host directory, `name/version`) of every package the lambda needs.
    pub packages: &'a [(PathBuf, PathBuf)],
    /// (host directory, name) of each layer, mounted read-only at `/opt/<name>`.
    pub layers: &'a [(PathBuf, String)],
    /// (path under `/mnt`, detached mount) of each access point, cloned by the launcher.
    pub volumes: &'a [(String, BorrowedFd<'a>)],
    pub listen: BorrowedFd<'a>,
    /// The write end of the worker's output pipe: the child's stdout and stderr.
    pub output: BorrowedFd<'a>,
    pub env: &'a [(String, String)],
    /// The lambda's limits (cgroup and `/tmp` size).
    pub limits: &'a crate::lambda_config::LambdaLimits,
    /// What the child gives up before it loads the handler.
    pub hardening: &'a sandbox::Hardening,
    /// The custom base it runs on (forked from that base's zygotes); `None`: the default.
    pub base: Option<&'a crate::bases::BaseRef>,
}

/// The import cache of one worker (see the module docs).
#[derive(Debug)]
pub struct ImportCache {
    enabled: bool,
    package_zygotes: bool,
    /// The default base's zygotes.
    cache: Policy<zygote::SandboxMaker>,
    /// Each custom base's.
    families: families::Families<zygote::SandboxMaker>,
}

impl ImportCache {
    /// A cache for `cfg`; enabled when `import_cache` is set and the base's zygote program
    /// speaks [`PROTOCOL`] (read once, here). `hardening`'s seccomp filters go to every
    /// zygote once, at its start (see `sandbox::harden`).
    ///
    /// With `ids` (user namespaces), every zygote runs in a user namespace of its own mapped
    /// to the whole uid range, and package zygotes follow `package_zygotes`; without, a
    /// zygote would keep the host's root, so package zygotes are off whatever it says.
    pub fn new(
        cfg: Arc<Config>,
        cgroups: CgroupSetup,
        hardening: &sandbox::Hardening,
        ids: Option<Arc<crate::identity::HostIds>>,
    ) -> Self {
        let enabled = cfg.import_cache && base_speaks_protocol(&cfg.base_dir);
        let rules = Rules {
            size: cfg.import_cache_size,
            min_starts: cfg.zygote_min_starts,
            package_zygotes: cfg.package_zygotes && ids.is_some(),
            root_retry: ROOT_RETRY,
        };
        Self {
            enabled,
            package_zygotes: rules.package_zygotes,
            cache: Policy::new(
                zygote::SandboxMaker::new(cfg, cgroups, hardening, ids),
                rules,
            ),
            families: families::Families::default(),
        }
    }

    /// Whether sandboxes are forked from zygotes.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Starts the root zygote (blocking). An error leaves the cache working: a later cold
    /// start tries again.
    pub fn start(&self) -> Result<(), StartError> {
        if !self.enabled {
            return Ok(());
        }
        self.cache.start()
    }

    /// Forks a handler sandbox for `req` from the best zygote. `Ok(None)`: the cache is off or
    /// has no zygote to offer (the caller starts a fresh sandbox). Blocking.
    pub fn fork_handler(&self, req: &HandlerRequest<'_>) -> Result<Option<Forked>, ForkError> {
        if !self.enabled {
            return Ok(None);
        }
        let want = package_set(req.packages)?;
        let forked = match req.base {
            None => {
                self.families.used_default();
                self.cache.fork_handler(&want, req)?
            }
            Some(base) => {
                let Some(policy) = self
                    .families
                    .policy(base, &self.cache.maker, &self.cache.rules)
                else {
                    return Ok(None);
                };
                policy.fork_handler(&want, req)?
            }
        };
        Ok(forked.map(|(sandbox, zygote)| Forked { sandbox, zygote }))
    }

    /// Hands `zygote` cgroups until it has [`SPARES`] spare children (blocking). Called after
    /// each fork, off the request's path (once the new sandbox has answered its first call),
    /// so that making spares never competes with a cold start; a fork that finds none hands
    /// one itself first. A zygote that cannot be reached is retired.
    pub fn refill(&self, zygote: &Zygote) {
        if let Err(e) = self.cache.maker.refill(zygote) {
            tracing::warn!(zygote = zygote.id(), error = %e, "cannot prepare a spare's cgroup");
            if e.fault() == Fault::Zygote {
                let why = "a cgroup hand-over failed";
                if self.cache.retire(zygote.id(), why).is_none() {
                    for p in self.families.policies() {
                        drop(p.retire(zygote.id(), why));
                    }
                }
            }
        }
    }

    /// Retires the least recently used leaf zygote other than the default base's root and
    /// `keep` (a custom base's root when it has no leaf: `families.rs`); returns its id.
    pub fn retire_lru(&self, keep: Option<u64>) -> Option<u64> {
        self.families.retire_lru(&self.cache, keep)
    }

    /// The zygotes of every base still alive, live ones and retired ones.
    fn all_zygotes(&self) -> policy::Zygotes<Zygote> {
        let mut all = self.cache.zygotes();
        for p in self.families.policies() {
            let z = p.zygotes();
            all.live.extend(z.live);
            all.retired.extend(z.retired);
        }
        all
    }

    /// Memory of every zygote still alive, retired ones included (blocking, cheap).
    pub fn memory_in_use(&self) -> u64 {
        let z = self.all_zygotes();
        z.live
            .iter()
            .chain(&z.retired)
            .map(|z| z.memory_bytes())
            .sum()
    }

    /// Counters (of every base's zygotes) and the zygotes, live first (blocking, cheap).
    pub fn stats(&self) -> ImportCacheStats {
        let policy::Zygotes { mut live, retired } = self.all_zygotes();
        live.sort_by_key(|z| z.id());
        let zygotes: Vec<ZygoteInfo> = live.iter().chain(&retired).map(|z| z.info()).collect();
        let families = self.families.policies();
        let sum = |counter: fn(&policy::Counters) -> &std::sync::atomic::AtomicU64| {
            std::iter::once(&self.cache.counters)
                .chain(families.iter().map(|p| &p.counters))
                .map(|c| counter(c).load(Ordering::Relaxed))
                .sum::<u64>()
        };
        ImportCacheStats {
            enabled: self.enabled,
            package_zygotes: self.package_zygotes,
            memory_mb: mb(zygotes
                .iter()
                .map(|z| (z.memory_mb * 1048576.0) as u64)
                .sum()),
            zygotes,
            created: sum(|c| &c.created),
            retired: sum(|c| &c.retired),
            forks: sum(|c| &c.forks),
            fork_failures: sum(|c| &c.fork_failures),
        }
    }

    /// True while any zygote, live or retired, still exists or is being destroyed.
    pub fn any_alive(&self) -> bool {
        // One count of destroys under way, shared by every base's maker.
        if self.cache.maker.destroying() {
            return true;
        }
        let z = self.all_zygotes();
        !z.live.is_empty() || !z.retired.is_empty()
    }

    /// Retires every zygote (shutdown); each ends with its last sandbox. Zygotes still being
    /// made are retired as they come.
    pub fn close(&self) {
        self.cache.close();
        self.families.close();
    }
}

/// Whether the base's zygote program speaks [`PROTOCOL`]; the log says why not.
fn base_speaks_protocol(base_dir: &Path) -> bool {
    let path = base_dir.join(ZYGOTE_PATH.trim_start_matches('/'));
    let source = match std::fs::read_to_string(&path) {
        Ok(source) => source,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                base = %base_dir.display(),
                "the base has no {ZYGOTE_PATH} (a cluster made by an older admin): import cache off"
            );
            return false;
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the zygote program: import cache off");
            return false;
        }
    };
    match protocol::declared_version(&source) {
        Some(PROTOCOL) => true,
        found => {
            let found = found.map_or_else(|| "no version".to_owned(), |v| format!("version {v}"));
            tracing::warn!(
                path = %path.display(),
                "the base's zygote program speaks protocol {found}, this worker version {PROTOCOL} (a cluster made by another admin): import cache off"
            );
            false
        }
    }
}

/// The sorted, distinct `name/version` entries of a package list.
fn package_set(packages: &[(PathBuf, PathBuf)]) -> Result<Vec<String>, PrepareError> {
    let mut v = packages
        .iter()
        .map(|(_, rel)| {
            rel.to_str()
                .map(str::to_owned)
                .ok_or_else(|| PrepareError::PackageName { rel: rel.clone() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    v.sort();
    v.dedup();
    Ok(v)
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

fn mb(bytes: u64) -> f64 {
    (bytes as f64 / 1048576.0 * 10.0).round() / 10.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn the_cache_is_off_unless_the_base_speaks_our_protocol() {
        let base = tempfile::tempdir().unwrap();
        assert!(!base_speaks_protocol(base.path()), "no zygote.py");
        let program = base.path().join(ZYGOTE_PATH.trim_start_matches('/'));
        std::fs::create_dir_all(program.parent().unwrap()).unwrap();
        for (source, speaks) in [
            ("import runtime\n", false),
            ("PROTOCOL = 1\n", false),
            (&format!("PROTOCOL = {}\n", PROTOCOL + 1), false),
            (
                include_str!("../../../cluster-template/runtime/zygote.py"),
                true,
            ),
        ] {
            std::fs::write(&program, source).unwrap();
            assert_eq!(base_speaks_protocol(base.path()), speaks, "{source:.40}");
        }
    }

    #[test]
    fn a_package_set_is_sorted_and_distinct() {
        let p = |rel: &str| (PathBuf::from("/p").join(rel), PathBuf::from(rel));
        let set = package_set(&[p("six/1"), p("idna/3"), p("six/1")]).unwrap();
        assert_eq!(set, ["idna/3", "six/1"]);
        let bad = std::ffi::OsStr::from_bytes(b"x\xff/1");
        let err = package_set(&[(PathBuf::from("/p"), PathBuf::from(bad))]).unwrap_err();
        assert!(matches!(err, PrepareError::PackageName { .. }), "{err}");
    }
}
