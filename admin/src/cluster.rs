//! Cluster directories: the layout `admin new` creates, the cluster's `config/template.json`, and
//! the base root filesystem of its sandboxes (a hardlink copy of a cached debootstrap tree).
//!
//! Layout of a cluster `<dir>`:
//! ```text
//! config/template.json   Config::default() + cluster-template/template.json + absolute paths
//! config/worker-N.json   written by `admin workers`
//! logs/                  worker-N.out, worker-N.pid
//! base/                  read-only root of every sandbox (hard links into the base cache)
//! packages/              mounted read-only at /packages
//! registry/              <name>/lambda_func.py
//! workers/worker-N/      a worker's state (scratch directories of its sandboxes)
//! ```
//! The cluster-template files are embedded in the binary, so `admin` needs no source tree.
//!
//! Steps of [`create_cluster`], in order: check the path (parent exists, target does not), build
//! the template config, make sure the base cache exists ([`base::ensure_base`]), create the
//! directory and its layout, hardlink-copy the base, install the in-sandbox runtime (a real copy,
//! never a link into the cache), write `template.json`. A failure after the directory was created
//! removes it again: there is never half a cluster.

pub mod base;
pub mod copy;
pub mod mirror;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use base::{BaseOrigin, Recipe};
pub use copy::CopyStats;

use worker::config::{Config, ConfigError};
use worker::launch::{COMPAT_DIR, RUNTIME_PATH};
use worker::zygote::ZYGOTE_PATH;

/// `cluster-template/template.json`: overrides of [`Config::default`] for new clusters.
pub const TEMPLATE_JSON: &str = include_str!("../../cluster-template/template.json");
/// `cluster-template/base.json`: the base root filesystem recipe.
pub const BASE_RECIPE_JSON: &str = include_str!("../../cluster-template/base.json");
/// `cluster-template/runtime/runtime.py`: the in-sandbox runtime.
pub const RUNTIME_PY: &str = include_str!("../../cluster-template/runtime/runtime.py");
/// `cluster-template/runtime/runtime_extras.py`: what the runtime imports for the entries that
/// need more than a plain `handler(event)`.
pub const RUNTIME_EXTRAS_PY: &str =
    include_str!("../../cluster-template/runtime/runtime_extras.py");
/// `cluster-template/runtime/runtime_http.py`: the WSGI and ASGI adapters, imported only for
/// those entries.
pub const RUNTIME_HTTP_PY: &str = include_str!("../../cluster-template/runtime/runtime_http.py");
/// `cluster-template/runtime/zygote.py`: the import cache's fork server.
pub const ZYGOTE_PY: &str = include_str!("../../cluster-template/runtime/zygote.py");
/// `cluster-template/runtime/compat/luna_lambda_tools.py`: what functions written for Luna
/// import, installed in [`COMPAT_DIR`].
pub const LUNA_TOOLS_PY: &str =
    include_str!("../../cluster-template/runtime/compat/luna_lambda_tools.py");

/// Subdirectories of a cluster (besides `base/`, which the copy creates).
pub const LAYOUT_DIRS: [&str; 5] = ["config", "logs", "packages", "registry", "workers"];

/// Errors creating a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{path} already exists: a new cluster needs a new directory")]
    Exists { path: PathBuf },
    #[error("parent directory of {path} does not exist: {source}")]
    NoParent {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid cluster path {path:?}: it must name a new directory")]
    BadPath { path: PathBuf },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cluster-template/template.json: {0}")]
    Template(ConfigError),
    #[error("cannot write {0}")]
    WriteConfig(ConfigError),
    #[error("base recipe {0}")]
    Recipe(String),
    #[error("base root filesystem {path} is not a directory")]
    NoBase { path: PathBuf },
    #[error("cannot tell what is mounted: {0}")]
    Mounts(#[from] sandbox::mountinfo::MountinfoError),
    #[error("debootstrap not found: run ./quickstart/deps.sh")]
    DebootstrapMissing,
    #[error(
        "no Debian mirror found in apt's sources (/etc/apt/sources.list, /etc/apt/sources.list.d/): \
         set {} to one",
        mirror::MIRROR_ENV
    )]
    NoMirror,
    #[error("{what} failed ({status}); its last lines:\n{tail}")]
    Command {
        what: &'static str,
        status: String,
        tail: String,
    },
    #[error("debootstrap failed ({status}) building {target}; its last lines:\n{tail}")]
    Debootstrap {
        target: PathBuf,
        status: String,
        tail: String,
    },
}

pub type Result<T> = std::result::Result<T, ClusterError>;

/// Options of [`create_cluster`]; the default builds (or reuses) the base cache from the embedded
/// recipe and prints progress to stderr.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Use this ready-made root filesystem instead of the cache (tests, or a custom base).
    pub base_from: Option<PathBuf>,
    /// Cache directory; `None`: `$LAMBDAWORKER_CACHE`, else `/var/cache/lambdaworker`.
    pub cache_dir: Option<PathBuf>,
    /// Debian mirror; `None`: `$LAMBDAWORKER_MIRROR`, else the one apt uses.
    pub mirror: Option<String>,
    /// Do not print progress (`base: ...` lines) to stderr.
    pub quiet: bool,
    /// Where progress goes instead of `base: ...` lines (a progress bar, say).
    pub progress: Option<ProgressSink>,
}

/// A receiver of the base build's progress: debootstrap's output lines and status messages.
#[derive(Clone)]
pub struct ProgressSink(pub std::sync::Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

/// What [`create_cluster`] made.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    /// The cluster directory (canonical).
    pub dir: PathBuf,
    /// `config/template.json`.
    pub template: PathBuf,
    /// The tree `base/` was copied from (cache entry or [`CreateOptions::base_from`]).
    pub base_source: PathBuf,
    /// Whether the cache was hit or built.
    pub base_origin: BaseOrigin,
    /// What the hardlink copy did.
    pub copy: CopyStats,
    /// Time the hardlink copy took.
    pub copy_elapsed: Duration,
}

/// The canonical path of a new cluster directory: the parent must exist, the target must not.
pub fn resolve_new_dir(dir: &Path) -> Result<PathBuf> {
    let bad = || ClusterError::BadPath {
        path: dir.to_owned(),
    };
    let name = dir.file_name().ok_or_else(bad)?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = std::fs::canonicalize(parent).map_err(|source| ClusterError::NoParent {
        path: dir.to_owned(),
        source,
    })?;
    if !parent.is_dir() {
        return Err(ClusterError::NoParent {
            path: dir.to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
        });
    }
    let target = parent.join(name);
    if std::fs::symlink_metadata(&target).is_ok() {
        return Err(ClusterError::Exists { path: target });
    }
    Ok(target)
}

/// The template config of a cluster at `dir`: defaults, the embedded template, absolute paths.
pub fn template_config(dir: &Path) -> Result<Config> {
    let mut cfg = Config::default()
        .merge_json(TEMPLATE_JSON)
        .map_err(ClusterError::Template)?;
    cfg.registry_dir = dir.join("registry");
    cfg.base_dir = dir.join("base");
    cfg.packages_dir = dir.join("packages");
    cfg.volumes_dir = dir.join("volumes");
    cfg.bases_dir = dir.join("bases");
    cfg.function_log_dir = dir.join("logs").join("functions");
    cfg.worker_dir = PathBuf::new();
    Ok(cfg)
}

/// Creates a cluster directory (see the module documentation for the steps).
pub fn create_cluster(dir: &Path, opts: &CreateOptions) -> Result<ClusterInfo> {
    let target = resolve_new_dir(dir)?;
    let cfg = template_config(&target)?;
    let quiet = opts.quiet;
    let sink = opts.progress.clone();
    let progress = move |line: &str| match &sink {
        _ if quiet => {}
        Some(sink) => (sink.0)(line),
        None => eprintln!("base: {line}"),
    };
    let (base_source, base_origin) = match &opts.base_from {
        Some(given) => {
            if !given.is_dir() {
                return Err(ClusterError::NoBase {
                    path: given.clone(),
                });
            }
            (given.clone(), BaseOrigin::Given)
        }
        None => {
            let recipe = Recipe::from_json(BASE_RECIPE_JSON, "cluster-template/base.json")?;
            let cache = opts
                .cache_dir
                .clone()
                .unwrap_or_else(base::default_cache_dir);
            base::ensure_base(&cache, &recipe, opts.mirror.as_deref(), &progress)?
        }
    };
    std::fs::create_dir(&target).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => ClusterError::Exists {
            path: target.clone(),
        },
        _ => ClusterError::Io {
            op: "create directory",
            path: target.clone(),
            source,
        },
    })?;
    match populate(&target, &base_source, &cfg) {
        Ok((copy, copy_elapsed)) => Ok(ClusterInfo {
            template: target.join("config/template.json"),
            dir: target,
            base_source,
            base_origin,
            copy,
            copy_elapsed,
        }),
        Err(e) => {
            if let Err(cleanup) = std::fs::remove_dir_all(&target) {
                progress(&format!(
                    "could not remove the partial cluster {}: {cleanup}",
                    target.display()
                ));
            }
            Err(e)
        }
    }
}

/// Fills a freshly created cluster directory; returns the copy's statistics and duration.
fn populate(target: &Path, base_source: &Path, cfg: &Config) -> Result<(CopyStats, Duration)> {
    for sub in LAYOUT_DIRS {
        let p = target.join(sub);
        std::fs::create_dir(&p).map_err(|source| ClusterError::Io {
            op: "create directory",
            path: p.clone(),
            source,
        })?;
    }
    let started = Instant::now();
    let base = target.join("base");
    let stats = copy::hardlink_tree(base_source, &base)?;
    let elapsed = started.elapsed();
    install_runtime(&base)?;
    cfg.save(&target.join("config/template.json"))
        .map_err(ClusterError::WriteConfig)?;
    Ok((stats, elapsed))
}

/// Where the absolute sandbox path `path` (e.g. [`RUNTIME_PATH`]) lies in the tree `base`.
pub fn in_base(base: &Path, path: &str) -> PathBuf {
    base.join(path.trim_start_matches('/'))
}

/// Writes the in-sandbox runtime and the fork server where the worker runs them from
/// ([`RUNTIME_PATH`], [`ZYGOTE_PATH`]: `<base>/usr/local/lib/lambdaworker/`), the modules the
/// runtime offers code written for other platforms ([`COMPAT_DIR`]), the empty mount point of
/// GPU sandboxes' driver files (`/usr/local/nvidia`), and a `VERSION` file, as
/// new files (the base's other files are links into the cache, which must stay untouched).
/// Then no directory of the base stays writable by others ([`close_shared_dirs`]).
pub fn install_runtime(base: &Path) -> Result<()> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| ClusterError::Io { op, path, source }
    };
    let runtime = in_base(base, RUNTIME_PATH);
    let dir = runtime.parent().unwrap_or(base).to_owned();
    // Each missing level is created with mode 0755 whatever the umask, so sandboxes can read it.
    let mut missing = Vec::new();
    let mut cur = dir.as_path();
    while !cur.exists() {
        missing.push(cur.to_owned());
        match cur.parent() {
            Some(p) if p.starts_with(base) => cur = p,
            _ => break,
        }
    }
    let compat = in_base(base, COMPAT_DIR);
    if !std::fs::symlink_metadata(&compat).is_ok_and(|m| m.is_dir()) {
        missing.insert(0, compat.clone());
    }
    // The mount point of a GPU sandbox's driver files (`worker::gpu::NVIDIA_DIR`).
    let nvidia = in_base(base, worker::gpu::NVIDIA_DIR);
    if !std::fs::symlink_metadata(&nvidia).is_ok_and(|m| m.is_dir()) {
        missing.insert(0, nvidia);
    }
    for d in missing.iter().rev() {
        std::fs::create_dir(d).map_err(io("create directory", d))?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
            .map_err(io("chmod", d))?;
    }
    for (p, content) in [
        (runtime.clone(), RUNTIME_PY.to_owned()),
        (dir.join("runtime_extras.py"), RUNTIME_EXTRAS_PY.to_owned()),
        (dir.join("runtime_http.py"), RUNTIME_HTTP_PY.to_owned()),
        (in_base(base, ZYGOTE_PATH), ZYGOTE_PY.to_owned()),
        (
            compat.join("luna_lambda_tools.py"),
            LUNA_TOOLS_PY.to_owned(),
        ),
        (
            dir.join("VERSION"),
            format!("{}\n", env!("CARGO_PKG_VERSION")),
        ),
    ] {
        // Never write through a link into the cache: replace whatever is there.
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ClusterError::Io {
                    op: "remove",
                    path: p,
                    source,
                })
            }
        }
        std::fs::write(&p, content).map_err(io("write", &p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))
            .map_err(io("chmod", &p))?;
    }
    close_shared_dirs(base)
}

/// Takes write access for group and others off every directory of the base that has it
/// (Debian's `/tmp`, `/var/tmp`, `/run/lock`: 1777). The base is every sandbox's shared,
/// read-only root; a zygote is root of its own user namespace and may remount its view of the
/// base read-write, and then such a directory would be the one place its host uid could write
/// to the base (every other inode belongs to the host's root, which no sandbox's namespace
/// maps). Sandboxes get their own `/tmp` tmpfs, so nothing needs these. Directories only: the
/// base's files are links into the cache, and none is writable by others.
pub fn close_shared_dirs(base: &Path) -> Result<()> {
    for entry in walkdir::WalkDir::new(base).follow_links(false) {
        let entry = entry.map_err(|e| ClusterError::Io {
            op: "walk",
            path: e.path().unwrap_or(base).to_owned(),
            source: e.into(),
        })?;
        if !entry.file_type().is_dir() {
            continue;
        }
        let meta = entry.metadata().map_err(|e| ClusterError::Io {
            op: "stat",
            path: entry.path().to_owned(),
            source: e.into(),
        })?;
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
        if mode & 0o022 != 0 {
            let closed = mode & !0o1022;
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(closed))
                .map_err(|source| ClusterError::Io {
                    op: "chmod",
                    path: entry.path().to_owned(),
                    source,
                })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A tiny root filesystem standing in for the debootstrap cache.
    fn fake_base(root: &Path) -> PathBuf {
        let base = root.join("fake-base");
        std::fs::create_dir_all(base.join("usr/bin")).unwrap();
        std::fs::create_dir_all(base.join("usr/local/lib")).unwrap();
        std::fs::create_dir_all(base.join("etc")).unwrap();
        std::fs::write(base.join("usr/bin/python3"), b"#!fake python").unwrap();
        std::fs::write(base.join("etc/os-release"), b"ID=debian\n").unwrap();
        std::os::unix::fs::symlink("usr/bin", base.join("bin")).unwrap();
        base::post_process(&base).unwrap();
        base
    }

    fn opts(base: &Path) -> CreateOptions {
        CreateOptions {
            base_from: Some(base.to_owned()),
            quiet: true,
            ..CreateOptions::default()
        }
    }

    #[test]
    fn layout_template_and_runtime() {
        let tmp = tempfile::tempdir().unwrap();
        let base = fake_base(tmp.path());
        let dir = tmp.path().join("c1");
        let info = create_cluster(&dir, &opts(&base)).unwrap();
        let canon = std::fs::canonicalize(&dir).unwrap();
        assert_eq!(info.dir, canon);
        assert_eq!(info.base_origin, BaseOrigin::Given);
        for sub in ["config", "logs", "base", "packages", "registry", "workers"] {
            assert!(dir.join(sub).is_dir(), "{sub}");
        }
        let cfg = Config::load(&dir.join("config/template.json")).unwrap();
        assert_eq!(cfg.registry_dir, canon.join("registry"));
        assert_eq!(cfg.base_dir, canon.join("base"));
        assert_eq!(cfg.packages_dir, canon.join("packages"));
        assert_eq!(cfg.worker_dir, PathBuf::new());
        assert_eq!(cfg.worker_port, 8080);
        // The base is linked, the runtime is a file of its own.
        let a = std::fs::metadata(base.join("usr/bin/python3")).unwrap();
        let b = std::fs::metadata(dir.join("base/usr/bin/python3")).unwrap();
        assert_eq!(a.ino(), b.ino());
        let rt = dir.join("base/usr/local/lib/lambdaworker/runtime.py");
        assert_eq!(std::fs::read_to_string(&rt).unwrap(), RUNTIME_PY);
        assert_eq!(std::fs::metadata(&rt).unwrap().nlink(), 1);
        let version =
            std::fs::read_to_string(dir.join("base/usr/local/lib/lambdaworker/VERSION")).unwrap();
        assert_eq!(version.trim(), env!("CARGO_PKG_VERSION"));
        assert!(
            !base.join("usr/local/lib/lambdaworker").exists(),
            "the source base was modified"
        );
        for d in ["packages", "handler", "host", "tmp", "proc", "dev"] {
            assert!(dir.join("base").join(d).is_dir(), "base/{d}");
        }
        assert!(info.copy.linked >= 2, "{:?}", info.copy);
        // No directory of the cluster's base is writable by others (the source's /tmp was).
        assert_eq!(
            std::fs::metadata(base.join("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
        for entry in walkdir::WalkDir::new(dir.join("base")) {
            let entry = entry.unwrap();
            if entry.file_type().is_dir() {
                let mode = entry.metadata().unwrap().mode();
                assert_eq!(mode & 0o022, 0, "{}", entry.path().display());
            }
        }
    }

    #[test]
    fn relative_path_is_resolved_against_the_current_dir() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        let got = resolve_new_dir(&tmp.path().join("sub/../c")).unwrap();
        assert_eq!(got, std::fs::canonicalize(tmp.path()).unwrap().join("c"));
        assert!(matches!(
            resolve_new_dir(Path::new("/")),
            Err(ClusterError::BadPath { .. })
        ));
        assert!(matches!(
            resolve_new_dir(&tmp.path().join("..")),
            Err(ClusterError::BadPath { .. })
        ));
    }

    #[test]
    fn existing_dir_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let base = fake_base(tmp.path());
        let dir = tmp.path().join("c");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("keep"), b"mine").unwrap();
        let err = create_cluster(&dir, &opts(&base)).unwrap_err();
        assert!(matches!(err, ClusterError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(std::fs::read(dir.join("keep")).unwrap(), b"mine");
        // A dangling symlink is refused too.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink("/nonexistent/x", &link).unwrap();
        assert!(matches!(
            create_cluster(&link, &opts(&base)),
            Err(ClusterError::Exists { .. })
        ));
    }

    #[test]
    fn missing_parent_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let base = fake_base(tmp.path());
        let dir = tmp.path().join("no/such/parent/c");
        let err = create_cluster(&dir, &opts(&base)).unwrap_err();
        assert!(matches!(err, ClusterError::NoParent { .. }), "{err}");
        assert!(err.to_string().contains("no/such/parent/c"), "{err}");
        assert!(!tmp.path().join("no").exists());
    }

    #[test]
    fn missing_base_is_an_error_and_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let err = create_cluster(&dir, &opts(&tmp.path().join("nobase"))).unwrap_err();
        assert!(err.to_string().contains("nobase"), "{err}");
        assert!(!dir.exists());
    }

    #[test]
    fn failure_after_creation_removes_the_partial_cluster() {
        let tmp = tempfile::tempdir().unwrap();
        let base = fake_base(tmp.path());
        // A file where the runtime's directory must go: installing the runtime fails after the
        // base was copied.
        std::fs::write(base.join("usr/local/lib/lambdaworker"), b"in the way").unwrap();
        let dir = tmp.path().join("c");
        let err = create_cluster(&dir, &opts(&base)).unwrap_err();
        assert!(err.to_string().contains("lambdaworker"), "{err}");
        assert!(!dir.exists(), "partial cluster left behind");
        assert!(
            base.join("usr/bin/python3").exists(),
            "the source base was damaged"
        );
    }

    #[test]
    fn runtime_files_go_where_the_worker_runs_them() {
        let tmp = tempfile::tempdir().unwrap();
        let base = fake_base(tmp.path());
        install_runtime(&base).unwrap();
        assert_eq!(
            std::fs::read_to_string(in_base(&base, RUNTIME_PATH)).unwrap(),
            RUNTIME_PY
        );
        assert_eq!(
            std::fs::read_to_string(in_base(&base, ZYGOTE_PATH)).unwrap(),
            ZYGOTE_PY
        );
        let dir = base.join("usr/local/lib/lambdaworker");
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        assert_eq!(
            std::fs::read_to_string(in_base(&base, COMPAT_DIR).join("luna_lambda_tools.py"))
                .unwrap(),
            LUNA_TOOLS_PY
        );
        let mode = std::fs::metadata(in_base(&base, COMPAT_DIR))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        // Installing again replaces the files instead of writing through them.
        install_runtime(&base).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("runtime_extras.py")).unwrap(),
            RUNTIME_EXTRAS_PY
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            6,
            "5 files and compat/"
        );
    }

    #[test]
    fn embedded_templates_are_valid() {
        let cfg = template_config(Path::new("/c")).unwrap();
        cfg.validate_limits().unwrap();
        let recipe = Recipe::from_json(BASE_RECIPE_JSON, "base.json").unwrap();
        assert_eq!(recipe.suite, "trixie");
        assert_eq!(recipe.variant, "minbase");
        assert_eq!(recipe.include, ["python3", "python3-pip"]);
    }
}
