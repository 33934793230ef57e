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
//! 4. The lambda's sandboxes then see only those directories, read-only, at
//!    `/packages/<name>/<version>` (a view: see `sandbox::View`), on `sys.path` through
//!    `LAMBDA_PACKAGES`.
//!
//! Inside pip's sandbox the host's `/etc/resolv.conf` and CA bundle are bound read-only over the
//! base's (registries behind TLS-intercepting proxies need the host's bundle), the environment is
//! clean (no host `PIP_*` variables; proxies pass through), and pip's temporary files go to the
//! staging directory on disk.

use std::fs::File;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use sandbox::cgroup::{CgroupSetup, Limits};
use sandbox::{Sandbox, SandboxSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::files::{chown_tree, read_tail};
use crate::name::LambdaName;

/// Requirement files, in order of precedence.
pub const REQUIREMENTS_FILES: [&str; 2] = ["requirements.txt", "packages.txt"];
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const RESOLV_CONF: &str = "/etc/resolv.conf";
const PIP_MEMORY_MB: u64 = 2048;
const PIP_MAX_PROCS: u64 = 256;
/// Largest requirements file accepted.
const MAX_REQUIREMENTS_BYTES: u64 = 64 * 1024;
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

/// Why pip's sandbox did not start.
#[derive(Debug, thiserror::Error)]
pub enum PipSandboxError {
    #[error("invalid spec: {0}")]
    Spec(#[from] sandbox::SpecError),
    #[error("{0}")]
    Spawn(#[from] sandbox::SandboxError),
}

/// A line of a requirements file that is refused, with its number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct RequirementsError {
    pub line: usize,
    pub reason: String,
}

/// A lambda's requirement list, read from its registry directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirements {
    /// The file it came from (`requirements.txt` or `packages.txt`).
    pub file: &'static str,
    /// The requirement specifiers, in file order.
    pub specs: Vec<String>,
}

impl Requirements {
    /// Identity of the list: the same specifiers resolve once per cluster.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for s in &self.specs {
            h.update(s.as_bytes());
            h.update(b"\n");
        }
        let digest = h.finalize();
        crate::hex(&digest[..12])
    }
}

/// Parses a requirements file: one specifier a line, `#` comments, blank lines. Option lines
/// (`-r`, `-e`, `--index-url`, ...) are refused: they could point pip at other files or indexes.
pub fn parse_requirements(text: &str) -> Result<Vec<String>, RequirementsError> {
    let mut specs = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = match raw.find('#') {
            Some(at) => &raw[..at],
            None => raw,
        }
        .trim();
        if line.is_empty() {
            continue;
        }
        let refuse = |reason: String| RequirementsError {
            line: i + 1,
            reason,
        };
        if line.starts_with('-') {
            return Err(refuse(format!(
                "option lines such as {line:?} are not supported"
            )));
        }
        if line.ends_with('\\') {
            return Err(refuse("line continuations are not supported".to_owned()));
        }
        let first = line.chars().next().unwrap_or(' ');
        if !first.is_ascii_alphanumeric() {
            return Err(refuse(format!(
                "{line:?} does not start with a package name"
            )));
        }
        if let Some(bad) = line
            .chars()
            .find(|c| c.is_control() || !(c.is_ascii_graphic() || *c == ' '))
        {
            return Err(refuse(format!("character {bad:?} is not allowed")));
        }
        specs.push(line.to_owned());
    }
    Ok(specs)
}

/// Reads the requirement list of the lambda in `dir`; `None` when it has no requirement file
/// (or an empty one).
pub fn read_requirements(
    lambda: &LambdaName,
    dir: &Path,
) -> Result<Option<Requirements>, PackageError> {
    let present: Vec<&'static str> = REQUIREMENTS_FILES
        .iter()
        .copied()
        .filter(|f| std::fs::symlink_metadata(dir.join(f)).is_ok())
        .collect();
    let Some(&file) = present.first() else {
        return Ok(None);
    };
    if present.len() > 1 {
        tracing::info!(lambda = %lambda, "both requirements.txt and packages.txt exist; using requirements.txt");
    }
    let path = dir.join(file);
    let bad = |message: String| PackageError::BadRequirements {
        lambda: lambda.to_string(),
        path: path.clone(),
        message,
    };
    let text = crate::files::read_regular_file(&path, MAX_REQUIREMENTS_BYTES)
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad("it was removed while being read".to_owned()))?;
    let specs = parse_requirements(&text).map_err(|e| bad(e.to_string()))?;
    if specs.is_empty() {
        return Ok(None);
    }
    Ok(Some(Requirements { file, specs }))
}

/// PEP 503 normalized project name: lower case, runs of `-`, `_`, `.` as one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// A name or version pip reported is used as a directory name: letters, digits, `.`, `-`, `_`,
/// `+`, `!` only, and not `.`/`..`.
fn safe_component(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '!'))
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
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct PackageStats {
    pub resolves: u64,
    pub installs: u64,
    pub install_failures: u64,
}

/// The cluster's package directory as one worker uses it.
pub struct Packages {
    cfg: Arc<Config>,
    cgroups: CgroupSetup,
    cgroup_parent: PathBuf,
    /// pip runs package code (sdist builds), so it runs as the sandbox user with the same
    /// capabilities, `no_new_privs` and seccomp filters as handlers.
    hardening: sandbox::Hardening,
    dir: PathBuf,
    /// Resolved lists by requirements hash, the most recently used ones (bounded).
    resolved: Mutex<LruCache<String, Arc<Vec<Package>>>>,
    next_id: AtomicU64,
    resolves: AtomicU64,
    installs: AtomicU64,
    install_failures: AtomicU64,
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

/// An exclusive `flock` on a lock file, released on drop.
struct Lock {
    _lock: nix::fcntl::Flock<File>,
}

impl Lock {
    fn take(path: &Path) -> std::io::Result<Self> {
        let mut f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        loop {
            match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive) {
                Ok(lock) => return Ok(Self { _lock: lock }),
                Err((back, nix::errno::Errno::EINTR)) => f = back,
                Err((_, errno)) => return Err(std::io::Error::from(errno)),
            }
        }
    }
}

/// What one pip run left: exit code, the tail of its output, and its staging directory
/// (the caller removes it).
struct PipRun {
    code: Option<i32>,
    staging: PathBuf,
    output_tail: String,
}

impl Packages {
    pub fn new(cfg: Arc<Config>, cgroups: CgroupSetup, hardening: sandbox::Hardening) -> Self {
        Self {
            cgroup_parent: cfg.cgroup_parent(),
            hardening,
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
        let list = match cached {
            Some(list) => list,
            None => {
                let list = Arc::new(self.resolve(lambda, &req, &hash)?);
                self.lock_resolved().put(hash, Arc::clone(&list));
                list
            }
        };
        for p in list.iter() {
            if !self.path_of(p).is_dir() {
                self.install(lambda, p)?;
            }
        }
        Ok(list.as_ref().clone())
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
    ) -> Result<Vec<Package>, PackageError> {
        let saved = self.subdir(".resolved")?.join(format!("{hash}.json"));
        let lock_path = self.subdir(".locks")?.join(format!("resolve-{hash}"));
        let _lock = Lock::take(&lock_path).map_err(|e| self.internal("lock", &lock_path, e))?;
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
    fn install(&self, lambda: &LambdaName, p: &Package) -> Result<(), PackageError> {
        let lock_path = self
            .subdir(".locks")?
            .join(format!("install-{}-{}", p.name, p.version));
        let _lock = Lock::take(&lock_path).map_err(|e| self.internal("lock", &lock_path, e))?;
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

    /// Runs `python3 -m pip install --ignore-installed --quiet <options> -- <specs>` in a sandbox
    /// over the base with the host's network; its `/host` is a fresh staging directory under
    /// `packages/.staging/`.
    fn pip(
        &self,
        lambda: &LambdaName,
        step: &str,
        options: &[&str],
        specs: &[String],
    ) -> Result<PipRun, PackageError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let staging = self
            .subdir(".staging")?
            .join(format!("{step}-{}-{id}", std::process::id()));
        let tmp = staging.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| self.internal("create", &tmp, e))?;
        // pip runs as the sandbox user: its /host (and the temporary directory in it) is its own.
        let (uid, gid) = (self.hardening.uid, self.hardening.gid);
        for d in [&staging, &tmp] {
            std::os::unix::fs::lchown(d, Some(uid), Some(gid))
                .map_err(|e| self.internal("hand over", d, e))?;
        }
        let outcome = self.pip_in(lambda, id, &staging, options, specs);
        if outcome.is_err() {
            remove_staging(&staging);
        }
        outcome
    }

    fn pip_in(
        &self,
        lambda: &LambdaName,
        id: u64,
        staging: &Path,
        options: &[&str],
        specs: &[String],
    ) -> Result<PipRun, PackageError> {
        let cfg = &self.cfg;
        let mut argv: Vec<String> = [
            "/usr/bin/python3",
            "-m",
            "pip",
            "install",
            "--ignore-installed",
            "--quiet",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        argv.extend(
            [
                "--break-system-packages",
                "--no-input",
                "--disable-pip-version-check",
                "--no-cache-dir",
                "--progress-bar",
                "off",
            ]
            .iter()
            .map(|s| (*s).to_owned()),
        );
        if !cfg.pip_index_url.is_empty() {
            argv.push("--index-url".into());
            argv.push(cfg.pip_index_url.clone());
        }
        argv.extend(options.iter().map(|s| (*s).to_owned()));
        argv.push("--".to_owned());
        argv.extend(specs.iter().cloned());
        let mut builder =
            SandboxSpec::builder(&cfg.base_dir, self.cgroup_parent.join(format!("pip-{id}")))
                .mount(staging, "/host", true)
                .net(sandbox::NetMode::Host)
                .hostname("lambda-pip")
                .harden(self.hardening.clone())
                .limits(Limits {
                    memory_bytes: Some(PIP_MEMORY_MB * 1024 * 1024),
                    pids_max: Some(PIP_MAX_PROCS),
                    cpu_quota: None,
                })
                .command(argv)
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .env("HOME", "/host/tmp")
                .env("LANG", "C.UTF-8")
                .env("TMPDIR", "/host/tmp")
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .env("SSL_CERT_FILE", CA_BUNDLE)
                .env("PIP_CERT", CA_BUNDLE)
                .cwd("/host")
                .output(staging.join("stdout"), staging.join("stderr"));
        for (host, inside) in [(RESOLV_CONF, RESOLV_CONF), (CA_BUNDLE, CA_BUNDLE)] {
            let in_base = cfg.base_dir.join(inside.trim_start_matches('/'));
            let base_is_file = std::fs::symlink_metadata(&in_base).is_ok_and(|m| m.is_file());
            if Path::new(host).is_file() && base_is_file {
                builder = builder.mount(host, inside, false);
            }
        }
        for key in [
            "http_proxy",
            "https_proxy",
            "no_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
        ] {
            if let Ok(v) = std::env::var(key) {
                builder = builder.env(key, &v);
            }
        }
        let pip_error = |source: PipSandboxError| PackageError::Pip {
            lambda: lambda.to_string(),
            source,
        };
        let spec = builder.build().map_err(|e| pip_error(e.into()))?;
        let mut sb = Sandbox::spawn(&spec, &self.cgroups, &[]).map_err(|e| pip_error(e.into()))?;
        let limit = Duration::from_secs(cfg.install_timeout_s);
        let code = sb.wait_timeout(limit);
        if let Err(e) = sb.destroy() {
            tracing::warn!(lambda = %lambda, error = %e, "cannot destroy pip's sandbox");
        }
        let mut output_tail = read_tail(&staging.join("stderr"), 2000);
        if output_tail.trim().is_empty() {
            output_tail = read_tail(&staging.join("stdout"), 2000);
        }
        if code.is_none() {
            output_tail = format!(
                "pip did not finish within install_timeout_s ({} s) and was stopped",
                cfg.install_timeout_s
            );
        }
        Ok(PipRun {
            code,
            staging: staging.to_owned(),
            output_tail,
        })
    }
}

/// The lines of pip's output worth showing: its `ERROR:` lines, else its last lines.
fn pip_message(run: &PipRun) -> String {
    let errors: Vec<&str> = run
        .output_tail
        .lines()
        .filter(|l| l.starts_with("ERROR:"))
        .collect();
    let text = if errors.is_empty() {
        let lines: Vec<&str> = run.output_tail.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    } else {
        errors.join("\n")
    };
    match run.code {
        Some(0) | None => text,
        Some(code) if text.trim().is_empty() => format!("pip exited with status {code}"),
        Some(_) => text,
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

    #[test]
    fn requirements_are_parsed_with_comments_and_refuse_options() {
        let text = "# deps\nnumpy==2.2.6  # pinned\n\nrequests>=2\nsix\n";
        assert_eq!(
            parse_requirements(text).unwrap(),
            ["numpy==2.2.6", "requests>=2", "six"]
        );
        for bad in [
            "-r other.txt",
            "--index-url http://x",
            "-e .",
            "numpy \\",
            "~x",
            "a\u{7}",
        ] {
            assert!(parse_requirements(bad).is_err(), "{bad:?}");
        }
        let err = parse_requirements("ok\n-r x").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().starts_with("line 2: "), "{err}");
    }

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

    #[test]
    fn names_are_normalized_and_checked() {
        assert_eq!(normalize_name("Foo__Bar.baz"), "foo-bar-baz");
        assert_eq!(normalize_name("NumPy"), "numpy");
        assert!(safe_component("2.2.6"));
        assert!(safe_component("1.0+local"));
        assert!(!safe_component(".."));
        assert!(!safe_component("a/b"));
        assert!(!safe_component(""));
    }

    #[test]
    fn requirements_txt_wins_and_hash_depends_on_specs() {
        let tmp = tempfile::tempdir().unwrap();
        let name = LambdaName::parse("l").unwrap();
        assert_eq!(read_requirements(&name, tmp.path()).unwrap(), None);
        std::fs::write(tmp.path().join("packages.txt"), "six\n").unwrap();
        let r = read_requirements(&name, tmp.path()).unwrap().unwrap();
        assert_eq!(
            (r.file, r.specs.clone()),
            ("packages.txt", vec!["six".to_owned()])
        );
        std::fs::write(tmp.path().join("requirements.txt"), "numpy==2.2.6\n").unwrap();
        let r2 = read_requirements(&name, tmp.path()).unwrap().unwrap();
        assert_eq!(r2.file, "requirements.txt");
        assert_ne!(r.hash(), r2.hash());
        std::fs::write(tmp.path().join("requirements.txt"), "--extra-index-url x\n").unwrap();
        let err = read_requirements(&name, tmp.path()).unwrap_err();
        assert!(matches!(err, PackageError::BadRequirements { .. }), "{err}");
        assert!(err.to_string().contains("requirements.txt"), "{err}");
    }
}
