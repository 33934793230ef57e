//! Python packages of lambdas: `requirements.txt` (or the seed's `packages.txt`) installed with
//! real `pip` from the package index, one directory per resolved `name==version`.
//!
//! Steps, in the order [`Packages::ensure`] runs them:
//! 1. **Read** the lambda's `requirements.txt` (pip syntax: specifiers, comments, blank lines;
//!    option lines such as `-r` or `--index-url` are refused) or, when there is none,
//!    `packages.txt` (one package a line). When both exist, `requirements.txt` wins and the worker
//!    logs it.
//! 2. **Resolve** the list to exact versions, once per distinct list: `pip install --dry-run
//!    --ignore-installed --report` in a sandbox over the base (so wheels match the sandboxes'
//!    Python), with the host's network. The answer is kept in `packages/.resolved/<hash>.json`, so a
//!    list is resolved once per cluster (pinned at first use) and a restarted worker does not ask
//!    pip again.
//! 3. **Install** each resolved `name==version` that is missing, under a per-version lock
//!    (`flock` on `packages/.locks/`): `pip install --no-deps --target` into a staging directory
//!    in a sandbox, then one `rename` to `packages/<name>/<version>/`. Two first calls needing
//!    the same package install it once; a failed install leaves nothing behind and answers which
//!    package failed with pip's message.
//!    A call that finds another call or worker holding the lock logs that it waits for an
//!    install in progress; while steps 2 and 3 run, `/stats` shows them under
//!    `packages.in_progress` (`progress.rs`).
//! 4. The lambda's sandboxes then see only those directories, read-only, at
//!    `/packages/<name>/<version>` (a view: see `sandbox::View`), on `sys.path` through
//!    `LAMBDA_PACKAGES`.
//!
//! Inside pip's sandbox the host's `/etc/resolv.conf` and CA bundle are bound read-only over the
//! base's (registries behind TLS-intercepting proxies need the host's bundle), the environment is
//! clean (no host `PIP_*` variables; proxies pass through), and pip's temporary files go to the
//! staging directory on disk (`pip.rs`). Reading and checking the lists is `requirements.rs`.

mod pip;
mod progress;
mod requirements;

pub use pip::PipSandboxError;
pub use progress::{InstallProgress, Step};
pub use requirements::{
    normalize_name, parse_requirements, read_requirements, Requirements, RequirementsError,
    REQUIREMENTS_FILES,
};

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lru::LruCache;
use sandbox::cgroup::CgroupSetup;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::files::{chown_tree, FileLock};
use crate::name::LambdaName;
use pip::pip_message;
use progress::{Tracked, Tracker};
use requirements::safe_component;

/// Largest report pip may leave (`--report`, a few KiB per package).
const MAX_REPORT_BYTES: u64 = 16 * 1024 * 1024;

/// Resolved lists kept in memory (a list evicted here is read back from
/// `packages/.resolved/<hash>.json` when a lambda needs it again).
const MAX_RESOLVED_IN_MEMORY: usize = 256;

/// Why a lambda's packages cannot be made ready.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("lambda {lambda} has an invalid {path}: {message}")]
    BadRequirements {
        lambda: String,
        path: PathBuf,
        message: String,
    },
    #[error("lambda {lambda} needs {package}, which could not be installed: {message}")]
    Install {
        lambda: String,
        package: String,
        message: String,
    },
    #[error("packages: cannot {what} {path}: {message}")]
    Store {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("cannot start pip's sandbox for {lambda}: {source}")]
    Pip {
        lambda: String,
        source: PipSandboxError,
    },
}

/// One installed distribution a lambda uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Normalized name.
    pub name: String,
    pub version: String,
}

impl Package {
    /// `name/version`, its place under `packages/` and under `/packages` in a sandbox.
    pub fn rel(&self) -> PathBuf {
        Path::new(&self.name).join(&self.version)
    }

    pub fn spec(&self) -> String {
        format!("{}=={}", self.name, self.version)
    }
}

/// Counters shown by `/stats`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PackageStats {
    pub resolves: u64,
    pub installs: u64,
    pub install_failures: u64,
    /// Installs under way in this worker.
    pub in_progress: Vec<InstallProgress>,
}

/// The cluster's package directory as one worker uses it.
pub struct Packages {
    cfg: Arc<Config>,
    cgroups: CgroupSetup,
    cgroup_parent: PathBuf,
    /// pip runs package code (sdist builds), so it runs as the sandbox user with the same
    /// capabilities, `no_new_privs` and seccomp filters as handlers.
    hardening: sandbox::Hardening,
    /// The maps of pip's user namespace, when it has one.
    user_ns: Option<sandbox::IdMap>,
    /// pip's user on the host, owner of its staging directory.
    owner: (u32, u32),
    dir: PathBuf,
    /// Resolved lists by requirements hash, the most recently used ones (bounded).
    resolved: Mutex<LruCache<String, Arc<Vec<Package>>>>,
    next_id: AtomicU64,
    resolves: AtomicU64,
    installs: AtomicU64,
    install_failures: AtomicU64,
    /// Installs under way.
    progress: Tracker,
}

impl std::fmt::Debug for Packages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packages")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// pip's `--report` output, the parts used.
#[derive(Deserialize)]
struct Report {
    install: Vec<ReportItem>,
}

#[derive(Deserialize)]
struct ReportItem {
    metadata: ReportMetadata,
}

#[derive(Deserialize)]
struct ReportMetadata {
    name: String,
    version: String,
}

impl Packages {
    /// With `ids` (user namespaces), pip runs in a user namespace of its own as the range's
    /// installer slot; without, as `hardening`'s user.
    pub fn new(
        cfg: Arc<Config>,
        cgroups: CgroupSetup,
        hardening: sandbox::Hardening,
        ids: Option<Arc<crate::identity::HostIds>>,
    ) -> Self {
        let mut hardening = hardening;
        let mut owner = (hardening.uid, hardening.gid);
        let user_ns = ids.and_then(|ids| {
            let slot = crate::identity::INSTALLER_SLOT;
            let map = ids.sandbox_map(slot).ok()?;
            (hardening.uid, hardening.gid) = (slot, slot);
            owner = (ids.host_id(slot), ids.host_id(slot));
            Some(map)
        });
        Self {
            cgroup_parent: cfg.cgroup_parent(),
            hardening,
            user_ns,
            owner,
            dir: cfg.packages_dir.clone(),
            cgroups,
            cfg,
            resolved: Mutex::new(LruCache::new(
                NonZeroUsize::new(MAX_RESOLVED_IN_MEMORY).unwrap_or(NonZeroUsize::MIN),
            )),
            next_id: AtomicU64::new(1),
            resolves: AtomicU64::new(0),
            installs: AtomicU64::new(0),
            install_failures: AtomicU64::new(0),
            progress: Tracker::default(),
        }
    }

    /// Removes staging directories left by pip runs of workers that no longer exist (a worker
    /// killed during an install). Directories of live workers are theirs and stay.
    pub fn remove_stale_staging(&self) -> usize {
        let staging = self.dir.join(".staging");
        let Ok(entries) = std::fs::read_dir(&staging) else {
            return 0;
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // <step>-<pid>-<id>
            let pid = name.split('-').nth(1).and_then(|p| p.parse::<i32>().ok());
            let Some(pid) = pid else { continue };
            let alive = pid == std::process::id() as i32
                || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
            if !alive {
                remove_staging(&e.path());
                removed += 1;
            }
        }
        removed
    }

    pub fn stats(&self) -> PackageStats {
        PackageStats {
            resolves: self.resolves.load(Ordering::Relaxed),
            installs: self.installs.load(Ordering::Relaxed),
            install_failures: self.install_failures.load(Ordering::Relaxed),
            in_progress: self.progress.snapshot(),
        }
    }

    /// The host directory of an installed package.
    pub fn path_of(&self, p: &Package) -> PathBuf {
        self.dir.join(p.rel())
    }

    /// Makes sure every package the lambda in `handler_dir` needs is installed; returns them
    /// (empty without a requirement file). Blocking: may run pip for minutes.
    pub fn ensure(
        &self,
        lambda: &LambdaName,
        handler_dir: &Path,
    ) -> Result<Vec<Package>, PackageError> {
        let Some(req) = read_requirements(lambda, handler_dir)? else {
            return Ok(Vec::new());
        };
        let hash = req.hash();
        let cached = self.lock_resolved().get(&hash).map(Arc::clone);
        // Tracked (in `/stats`) only once there is work to do.
        let mut tracked: Option<Tracked<'_>> = None;
        let list = match cached {
            Some(list) => list,
            None => {
                let t = tracked.insert(self.progress.begin(lambda, Step::Resolve));
                let list = Arc::new(self.resolve(lambda, &req, &hash, t)?);
                self.lock_resolved().put(hash, Arc::clone(&list));
                list
            }
        };
        for (i, p) in list.iter().enumerate() {
            if !self.path_of(p).is_dir() {
                let t = tracked.get_or_insert_with(|| self.progress.begin(lambda, Step::Install));
                t.installing(p.spec(), i, list.len());
                self.install(lambda, p, t)?;
            }
        }
        Ok(list.as_ref().clone())
    }

    /// The lock at `path`; when another call or worker holds it, logs that this one waits for
    /// the install in progress (`what`), and shows it waiting in `/stats`.
    fn lock_or_wait(
        &self,
        lambda: &LambdaName,
        path: &Path,
        what: &str,
        tracked: &Tracked<'_>,
    ) -> Result<FileLock, PackageError> {
        if let Some(lock) = FileLock::try_take(path).map_err(|e| self.internal("lock", path, e))? {
            return Ok(lock);
        }
        tracing::info!(lambda = %lambda, install = what, "waiting for an install in progress (another call or worker holds it)");
        tracked.waiting(true);
        let started = Instant::now();
        let lock = FileLock::take(path).map_err(|e| self.internal("lock", path, e))?;
        tracked.waiting(false);
        tracing::info!(lambda = %lambda, install = what, waited_ms = started.elapsed().as_millis() as u64, "the install it waited for is done");
        Ok(lock)
    }

    fn lock_resolved(&self) -> std::sync::MutexGuard<'_, LruCache<String, Arc<Vec<Package>>>> {
        self.resolved.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many resolved lists are kept in memory.
    pub fn resolved_in_memory(&self) -> usize {
        self.lock_resolved().len()
    }

    fn internal(&self, what: &'static str, path: &Path, e: impl std::fmt::Display) -> PackageError {
        PackageError::Store {
            what,
            path: path.to_owned(),
            message: e.to_string(),
        }
    }

    fn subdir(&self, name: &str) -> Result<PathBuf, PackageError> {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d).map_err(|e| self.internal("create", &d, e))?;
        Ok(d)
    }

    /// The resolved list for `req`: from `.resolved/<hash>.json`, else from pip.
    fn resolve(
        &self,
        lambda: &LambdaName,
        req: &Requirements,
        hash: &str,
        tracked: &Tracked<'_>,
    ) -> Result<Vec<Package>, PackageError> {
        let saved = self.subdir(".resolved")?.join(format!("{hash}.json"));
        let lock_path = self.subdir(".locks")?.join(format!("resolve-{hash}"));
        let _lock = self.lock_or_wait(
            lambda,
            &lock_path,
            &format!("resolving {}", req.file),
            tracked,
        )?;
        if let Ok(text) = std::fs::read_to_string(&saved) {
            match serde_json::from_str::<Vec<Package>>(&text) {
                Ok(list)
                    if list
                        .iter()
                        .all(|p| safe_component(&p.name) && safe_component(&p.version)) =>
                {
                    return Ok(list)
                }
                _ => tracing::warn!(path = %saved.display(), "ignoring an unreadable resolution"),
            }
        }
        let started = Instant::now();
        let run = self.pip(
            lambda,
            "resolve",
            &["--dry-run", "--report", "/host/report.json"],
            &req.specs,
        )?;
        let staging = run.staging.clone();
        let result = (|| {
            if run.code != Some(0) {
                return Err(PackageError::Install {
                    lambda: lambda.to_string(),
                    package: req.specs.join(", "),
                    message: pip_message(&run),
                });
            }
            let report_path = staging.join("report.json");
            // pip wrote it as the sandbox user: read it as a file it may have replaced.
            let text = crate::files::read_regular_file(&report_path, MAX_REPORT_BYTES)
                .map_err(|e| self.internal("read pip's report", &report_path, e))?
                .ok_or_else(|| self.internal("read pip's report", &report_path, "missing"))?;
            let report: Report = serde_json::from_str(&text)
                .map_err(|e| self.internal("parse pip's report", &report_path, e))?;
            let mut list = Vec::new();
            for item in report.install {
                let p = Package {
                    name: normalize_name(&item.metadata.name),
                    version: item.metadata.version,
                };
                if !safe_component(&p.name) || !safe_component(&p.version) {
                    return Err(PackageError::Install {
                        lambda: lambda.to_string(),
                        package: p.spec(),
                        message: "pip reported a name or version unusable as a directory"
                            .to_owned(),
                    });
                }
                list.push(p);
            }
            list.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(list)
        })();
        remove_staging(&staging);
        let list = result?;
        self.resolves.fetch_add(1, Ordering::Relaxed);
        let tmp = saved.with_extension(format!("json.tmp-{}", std::process::id()));
        let text = serde_json::to_string_pretty(&list).unwrap_or_default();
        std::fs::write(&tmp, text + "\n")
            .and_then(|()| std::fs::rename(&tmp, &saved))
            .map_err(|e| self.internal("write", &saved, e))?;
        let names: Vec<String> = list.iter().map(Package::spec).collect();
        tracing::info!(lambda = %lambda, file = req.file, packages = %names.join(" "), ms = started.elapsed().as_millis() as u64, "resolved requirements");
        Ok(list)
    }

    /// Installs one package into `packages/<name>/<version>/` unless it is there already.
    fn install(
        &self,
        lambda: &LambdaName,
        p: &Package,
        tracked: &Tracked<'_>,
    ) -> Result<(), PackageError> {
        let lock_path = self
            .subdir(".locks")?
            .join(format!("install-{}-{}", p.name, p.version));
        let _lock = self.lock_or_wait(lambda, &lock_path, &p.spec(), tracked)?;
        let dest = self.path_of(p);
        if dest.is_dir() {
            return Ok(());
        }
        let started = Instant::now();
        let run = self.pip(
            lambda,
            "install",
            &["--no-deps", "--target", "/host/target"],
            &[p.spec()],
        )?;
        let staging = run.staging.clone();
        let result = if run.code == Some(0) {
            let target = staging.join("target");
            // pip wrote it as the sandbox user; the store belongs to root, so no sandbox can
            // change a package that others import. A link in place of the tree is refused,
            // and no link in it is followed.
            chown_tree(&target, 0, 0)
                .map_err(|e| self.internal("take ownership of", &target, e))
                .and_then(|()| self.subdir(&p.name))
                .and_then(|_| {
                    std::fs::rename(&target, &dest)
                        .map_err(|e| self.internal("move into place", &dest, e))
                })
        } else {
            Err(PackageError::Install {
                lambda: lambda.to_string(),
                package: p.spec(),
                message: pip_message(&run),
            })
        };
        remove_staging(&staging);
        match &result {
            Ok(()) => {
                self.installs.fetch_add(1, Ordering::Relaxed);
                tracing::info!(lambda = %lambda, package = %p.spec(), ms = started.elapsed().as_millis() as u64, "installed package");
            }
            Err(e) => {
                self.install_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(lambda = %lambda, package = %p.spec(), error = %e, "package install failed");
            }
        }
        result
    }
}

fn remove_staging(staging: &Path) {
    if staging.as_os_str().is_empty() {
        return;
    }
    if let Err(e) = crate::cleanup::remove_dir_all_if_present(staging) {
        tracing::warn!(path = %staging.display(), error = %e, "cannot remove a staging directory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A package store at `dir` whose pip would never run (no cgroups).
    fn store_at(dir: &Path) -> Packages {
        let cfg = Config {
            packages_dir: dir.to_owned(),
            ..Config::default()
        };
        let setup = CgroupSetup::V2 {
            root: PathBuf::from("/nonexistent"),
        };
        Packages::new(
            Arc::new(cfg),
            setup,
            sandbox::Hardening::new(65534, 65534).unwrap(),
            None,
        )
    }

    #[test]
    fn stale_staging_of_dead_workers_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let p = store_at(tmp.path());
        let staging = tmp.path().join(".staging");
        // pid 2^22 + 1 is above the kernel's pid_max limit: never a live process.
        let dead = staging.join("install-4194305-1");
        let mine = staging.join(format!("install-{}-2", std::process::id()));
        for d in [&dead, &mine] {
            std::fs::create_dir_all(d.join("tmp")).unwrap();
        }
        assert_eq!(p.remove_stale_staging(), 1);
        assert!(!dead.exists() && mine.exists());
    }

    #[test]
    fn resolved_lists_in_memory_are_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("packages");
        let p = store_at(&store);
        let lambda_dir = tmp.path().join("lambda");
        std::fs::create_dir_all(store.join(".resolved")).unwrap();
        std::fs::create_dir_all(&lambda_dir).unwrap();
        let name = LambdaName::parse("l").unwrap();
        let n = MAX_RESOLVED_IN_MEMORY + 100;
        for i in 0..n {
            // A list resolved earlier (on disk) whose package is installed: no pip runs.
            std::fs::write(
                lambda_dir.join("requirements.txt"),
                format!("pkg{i}==1.0\n"),
            )
            .unwrap();
            let req = read_requirements(&name, &lambda_dir).unwrap().unwrap();
            let saved = store.join(".resolved").join(format!("{}.json", req.hash()));
            std::fs::write(
                &saved,
                format!(r#"[{{"name": "pkg{i}", "version": "1.0"}}]"#),
            )
            .unwrap();
            std::fs::create_dir_all(store.join(format!("pkg{i}/1.0"))).unwrap();
            let list = p.ensure(&name, &lambda_dir).unwrap();
            assert_eq!(list[0].spec(), format!("pkg{i}==1.0"));
            assert!(p.resolved_in_memory() <= MAX_RESOLVED_IN_MEMORY);
        }
        assert_eq!(p.resolved_in_memory(), MAX_RESOLVED_IN_MEMORY);
        assert_eq!(p.stats().resolves, 0, "every list came from disk");
    }
}
